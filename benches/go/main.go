// Command ctxbench runs the ctxcore benchmark workloads against Go's own context package,
// printing the same lines as benches/report.py prints for the Rust side:
//
//	RESULT <workload> go <median ns per iteration>
//	ALLOC <workload> go thread_mean=<n> global_mean=<n> bytes_mean=<n>
//
// Method, as criterion's: per workload, a warm-up that also calibrates the iteration count,
// then -samples samples of that many iterations each over about -time in total; the line
// reports the median sample's time per iteration. Every workload checks that the work it
// timed happened (panics otherwise). Standard library only.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

var (
	warmup   = flag.Duration("warmup", time.Second, "warm-up time per workload")
	measure  = flag.Duration("time", 2*time.Second, "measurement time per workload")
	samples  = flag.Int("samples", 20, "samples per workload")
	filter   = flag.String("filter", "", "regexp: run only the matching workloads")
	runAlloc = flag.Bool("allocs", true, "also print allocation counts")
)

// bench runs f (which times n iterations itself, like criterion's iter_custom) and prints
// the median time per iteration.
func bench(name string, f func(n int) time.Duration) {
	if *filter != "" && !regexp.MustCompile(*filter).MatchString(name) {
		return
	}
	// Warm up and calibrate: double n until a run takes a sample's share of the time.
	n := 1
	perSample := *measure / time.Duration(*samples)
	start := time.Now()
	var per float64
	for {
		d := f(n)
		per = float64(d) / float64(n)
		if time.Since(start) >= *warmup && d >= perSample/4 {
			break
		}
		if d < perSample {
			n *= 2
		}
	}
	if per > 0 {
		n = int(float64(perSample) / per)
	}
	if n < 1 {
		n = 1
	}
	res := make([]float64, 0, *samples)
	for i := 0; i < *samples; i++ {
		res = append(res, float64(f(n))/float64(n))
	}
	sort.Float64s(res)
	med := res[len(res)/2]
	if len(res)%2 == 0 {
		med = (res[len(res)/2-1] + res[len(res)/2]) / 2
	}
	fmt.Printf("RESULT %s go %.3f\n", name, med)
}

func must(ok bool, what string) {
	if !ok {
		panic("check failed: " + what)
	}
}

func isDone(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

var sinkCtx context.Context

// ---- check -----------------------------------------------------------------

func benchCheck() {
	root, cancelRoot := context.WithCancel(context.Background())
	defer cancelRoot()
	ctx, cancel := context.WithCancel(root)
	defer cancel()
	bench("check", func(n int) time.Duration {
		done := 0
		t := time.Now()
		for i := 0; i < n; i++ {
			if isDone(ctx) {
				done++
			}
		}
		d := time.Since(t)
		must(done == 0, "live context reported done")
		return d
	})
	bench("check_err", func(n int) time.Duration {
		done := 0
		t := time.Now()
		for i := 0; i < n; i++ {
			if ctx.Err() != nil {
				done++
			}
		}
		d := time.Since(t)
		must(done == 0, "live context reported an error")
		return d
	})
	var flag int32
	bench("check_atomic", func(n int) time.Duration {
		done := 0
		t := time.Now()
		for i := 0; i < n; i++ {
			if atomic.LoadInt32(&flag) != 0 {
				done++
			}
		}
		d := time.Since(t)
		must(done == 0, "flag set")
		return d
	})
}

// ---- child, timeout child -----------------------------------------------------

func benchChild() {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	bench("child", func(n int) time.Duration {
		t := time.Now()
		for i := 0; i < n; i++ {
			ctx, cancel := context.WithCancel(parent)
			cancel()
			must(ctx.Err() != nil, "child not done")
		}
		d := time.Since(t)
		must(parent.Err() == nil, "parent done")
		return d
	})
	// 1,000 live children, cancelled oldest first.
	live := make([]node, 0, 1000)
	for i := 0; i < 1000; i++ {
		c, f := context.WithCancel(parent)
		live = append(live, node{c, f})
	}
	head := 0
	bench("child_churn1000", func(n int) time.Duration {
		t := time.Now()
		for i := 0; i < n; i++ {
			old := live[head]
			old.cancel()
			must(old.ctx.Err() != nil, "child not done")
			c, f := context.WithCancel(parent)
			live[head] = node{c, f}
			head = (head + 1) % len(live)
		}
		d := time.Since(t)
		must(parent.Err() == nil, "parent done")
		return d
	})
	for _, nd := range live {
		must(nd.ctx.Err() == nil, "live child done")
		nd.cancel()
	}
	bench("timeout_child", func(n int) time.Duration {
		t := time.Now()
		for i := 0; i < n; i++ {
			ctx, cancel := context.WithTimeout(parent, 30*time.Second)
			cancel()
			must(ctx.Err() != nil, "child not done")
		}
		d := time.Since(t)
		must(parent.Err() == nil, "parent done")
		return d
	})
}

// ---- values ------------------------------------------------------------------

type chainKey int
type extraKey struct{}
type rootKey struct{}
type levelAKey struct{}
type levelBKey struct{}
type levelCKey struct{}

// mixed is the Rust side's mixed chain: a root value, then depth-1 derivations cycling
// through WithCancel and WithValue of three other keys.
func mixed(base context.Context, depth int) (context.Context, []context.CancelFunc) {
	ctx := context.WithValue(base, rootKey{}, 1)
	var cancels []context.CancelFunc
	for i := 1; i < depth; i++ {
		switch i % 4 {
		case 1:
			c, f := context.WithCancel(ctx)
			cancels = append(cancels, f)
			ctx = c
		case 2:
			ctx = context.WithValue(ctx, levelAKey{}, i)
		case 3:
			ctx = context.WithValue(ctx, levelBKey{}, i)
		default:
			ctx = context.WithValue(ctx, levelCKey{}, i)
		}
	}
	return ctx, cancels
}

func benchChain(name string, ctx context.Context, key interface{}) {
	bench("value_lookup"+name, func(n int) time.Duration {
		sum := 0
		t := time.Now()
		for i := 0; i < n; i++ {
			sum += ctx.Value(key).(int)
		}
		d := time.Since(t)
		must(sum == n, "lookup sum")
		return d
	})
	bench("with_value"+name, func(n int) time.Duration {
		var last context.Context
		t := time.Now()
		for i := 0; i < n; i++ {
			last = context.WithValue(ctx, extraKey{}, i)
		}
		d := time.Since(t)
		must(last.Value(extraKey{}).(int) == n-1, "extra value")
		must(last.Value(key).(int) == 1, "root value")
		return d
	})
}

func chain(base context.Context, depth int) context.Context {
	ctx := base
	for i := 0; i < depth; i++ {
		ctx = context.WithValue(ctx, chainKey(i), i+1)
	}
	return ctx
}

func benchValues() {
	root, cancelRoot := context.WithCancel(context.Background())
	defer cancelRoot()
	for _, depth := range []int{1, 8, 64} {
		benchChain(fmt.Sprintf("/%d", depth), chain(root, depth), chainKey(0))
		ctx, cancels := mixed(root, depth)
		benchChain(fmt.Sprintf("_mixed/%d", depth), ctx, rootKey{})
		for _, f := range cancels {
			f()
		}
	}
}

// ---- tree --------------------------------------------------------------------

type node struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func buildFlat(root context.Context, nodes []node) []node {
	for i := 0; i < 1000; i++ {
		c, f := context.WithCancel(root)
		nodes = append(nodes, node{c, f})
	}
	return nodes
}

func buildFanout(root context.Context, nodes []node) []node {
	for i := 0; i < 10; i++ {
		c, f := context.WithCancel(root)
		nodes = append(nodes, node{c, f})
	}
	for _, r := range [][2]int{{0, 10}, {10, 110}} {
		for i := r[0]; i < r[1]; i++ {
			p := nodes[i].ctx
			for j := 0; j < 10; j++ {
				c, f := context.WithCancel(p)
				nodes = append(nodes, node{c, f})
			}
		}
	}
	return nodes
}

func benchTree() {
	server, cancelServer := context.WithCancel(context.Background())
	defer cancelServer()
	shapes := []struct {
		name  string
		count int
		build func(context.Context, []node) []node
	}{{"flat1000", 1000, buildFlat}, {"fanout10x3", 1110, buildFanout}}
	for _, s := range shapes {
		s := s
		nodes := make([]node, 0, s.count)
		bench("tree_cancel/"+s.name, func(n int) time.Duration {
			var total time.Duration
			for i := 0; i < n; i++ {
				root, cancel := context.WithCancel(server)
				nodes = s.build(root, nodes[:0])
				must(len(nodes) == s.count, "node count")
				must(nodes[s.count-1].ctx.Err() == nil, "born done")
				t := time.Now()
				cancel()
				total += time.Since(t)
				for _, nd := range nodes {
					must(nd.ctx.Err() != nil, "node not done")
					nd.cancel()
				}
			}
			must(server.Err() == nil, "server done")
			return total
		})
		bench("tree_full/"+s.name, func(n int) time.Duration {
			var total time.Duration
			for i := 0; i < n; i++ {
				t := time.Now()
				root, cancel := context.WithCancel(server)
				nodes = s.build(root, nodes[:0])
				cancel()
				done := nodes[s.count-1].ctx.Err() != nil
				for _, nd := range nodes {
					nd.cancel()
				}
				total += time.Since(t)
				must(done, "leaf not done")
			}
			must(server.Err() == nil, "server done")
			return total
		})
	}
}

// ---- request -----------------------------------------------------------------

type requestIDKey struct{}
type userKey struct{}

func request(server context.Context, id int) int {
	req, cancel := context.WithTimeout(server, 5*time.Second)
	req = context.WithValue(req, requestIDKey{}, id)
	req = context.WithValue(req, userKey{}, "gopher")
	var subs [3]node
	for i := range subs {
		c, f := context.WithCancel(req)
		subs[i] = node{c, f}
	}
	seenDone := 0
	for _, s := range subs {
		must(s.ctx.Value(requestIDKey{}).(int) == id, "request id")
		for j := 0; j < 10; j++ {
			if isDone(s.ctx) {
				seenDone++
			}
		}
	}
	cancel()
	must(req.Err() != nil, "request not done")
	for _, s := range subs {
		must(s.ctx.Err() != nil, "sub-task not done")
		s.cancel()
	}
	must(req.Value(userKey{}).(string) == "gopher", "user")
	return seenDone
}

func benchRequest() {
	server, cancelServer := context.WithCancel(context.Background())
	defer cancelServer()
	bench("request", func(n int) time.Duration {
		seen := 0
		t := time.Now()
		for i := 0; i < n; i++ {
			seen += request(server, i)
		}
		d := time.Since(t)
		must(seen == 0, "a check saw a live request done")
		must(server.Err() == nil, "server done")
		return d
	})
}

// ---- contended ---------------------------------------------------------------

func benchContended() {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	bench("contended", func(n int) time.Duration {
		var start, wg sync.WaitGroup
		start.Add(1)
		for g := 0; g < 2; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start.Wait()
				done := 0
				for i := 0; i < n; i++ {
					ctx, cancel := context.WithCancel(parent)
					cancel()
					if ctx.Err() != nil {
						done++
					}
				}
				must(done == n, "children not done")
			}()
		}
		t := time.Now()
		start.Done()
		wg.Wait()
		d := time.Since(t)
		must(parent.Err() == nil, "parent done")
		return d
	})
}

// ---- wake --------------------------------------------------------------------

// wake blocks `waiters` goroutines on one context's Done channel and times from cancel to
// the last one running again. Go has no threads or futures to choose between: goroutines
// stand for both (64 for the threads workload, 1,000 for the futures one).
func wake(server context.Context, waiters int) time.Duration {
	ctx, cancel := context.WithCancel(server)
	var ready, woken int32
	var last time.Time
	var wg sync.WaitGroup
	for i := 0; i < waiters; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			atomic.AddInt32(&ready, 1)
			<-ctx.Done()
			if atomic.AddInt32(&woken, 1) == int32(waiters) {
				last = time.Now()
			}
		}()
	}
	for atomic.LoadInt32(&ready) < int32(waiters) {
		runtime.Gosched()
	}
	time.Sleep(2 * time.Millisecond)
	t := time.Now()
	cancel()
	wg.Wait()
	must(int(woken) == waiters, "waiters woken")
	return last.Sub(t)
}

func benchWake() {
	server, cancelServer := context.WithCancel(context.Background())
	defer cancelServer()
	for _, w := range []struct {
		name    string
		waiters int
	}{{"wake/threads64", 64}, {"wake/futures1000", 1000}} {
		w := w
		// Bounded like the Rust side: 10 samples, a short budget.
		saveS, saveT, saveW := *samples, *measure, *warmup
		*samples, *measure, *warmup = 10, 300*time.Millisecond, 200*time.Millisecond
		bench(w.name, func(n int) time.Duration {
			var total time.Duration
			for i := 0; i < n; i++ {
				total += wake(server, w.waiters)
			}
			return total
		})
		*samples, *measure, *warmup = saveS, saveT, saveW
	}
}

// ---- allocations -------------------------------------------------------------

func allocs(name string, runs int, f func(i int)) {
	for i := 0; i < 1000; i++ {
		f(i)
	}
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	for i := 0; i < runs; i++ {
		f(i)
	}
	runtime.ReadMemStats(&b)
	fmt.Printf("ALLOC %s go thread_mean=%.3f global_mean=%.3f bytes_mean=%.1f\n", name,
		float64(b.Mallocs-a.Mallocs)/float64(runs), float64(b.Mallocs-a.Mallocs)/float64(runs),
		float64(b.TotalAlloc-a.TotalAlloc)/float64(runs))
}

func benchAllocs() {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	const runs = 20000
	allocs("child", runs, func(int) {
		ctx, cancel := context.WithCancel(parent)
		cancel()
		must(ctx.Err() != nil, "child")
	})
	allocs("timeout_child", runs, func(int) {
		ctx, cancel := context.WithTimeout(parent, 30*time.Second)
		cancel()
		must(ctx.Err() != nil, "timeout child")
	})
	allocs("request", runs, func(i int) { must(request(parent, i) == 0, "request") })
	base := context.WithValue(parent, userKey{}, "gopher")
	allocs("with_value", runs, func(i int) {
		ctx := context.WithValue(base, requestIDKey{}, i)
		must(ctx.Value(requestIDKey{}).(int) == i, "value")
	})
	allocs("check", runs, func(int) { must(!isDone(parent), "check") })
}

func main() {
	flag.Parse()
	fmt.Fprintf(os.Stderr, "go %s GOMAXPROCS=%d\n", runtime.Version(), runtime.GOMAXPROCS(0))
	fmt.Printf("GOVERSION %s\n", runtime.Version())
	benchCheck()
	benchChild()
	benchValues()
	benchTree()
	benchRequest()
	benchContended()
	benchWake()
	if *runAlloc {
		benchAllocs()
	}
}
