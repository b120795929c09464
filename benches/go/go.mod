module ctxcore/benches/go

go 1.19
