// throttle proxies TCP to the real nodes' OCI registry at a bandwidth limit
// that can be changed while it runs, so that pulling an image takes the time
// it takes on a node whose network is not free.
//
//	throttle -upstream 127.0.0.1:15000 -control 127.0.0.1:15010 -rate 25M \
//	    -listen real-cell-a=127.0.0.1:15011 -listen real-cell-b=127.0.0.1:15012
//
// Each -listen is one node's network interface: every connection accepted
// there shares that listener's rate (a total per node, as a NIC limits it,
// not a rate per connection), and two listeners do not slow each other down.
// Only the bytes from the upstream to the client (what a pull downloads) are
// limited; requests and uploads pass unlimited.
//
// The control address answers plain HTTP:
//
//	GET /status           the rate and each listener's connections and bytes
//	GET /rate             the rate in bytes a second (0: unlimited)
//	PUT /rate  body 25M   a new rate, applied at once to the connections open
//
// A rate is bytes a second: a number with an optional suffix K, M, G (1000,
// 1000^2, 1000^3) or Ki, Mi, Gi (1024^n), optionally followed by "B" or
// "B/s"; 0, "off" and "unlimited" lift the limit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// limiter paces the bytes of every connection of one listener. Each chunk
// reserves its transmission time on a virtual clock shared by the listener's
// connections and waits until then: the chunks leave at `rate` bytes a
// second on average, however many connections there are. The clock may lag
// the wall clock by up to `slack`, so that a sleep that overshoots (timers
// wake late by up to a millisecond, a chunk lasts a few) is made up by the
// next chunks instead of lowering the rate.
const slack = 50 * time.Millisecond

type limiter struct {
	mu   sync.Mutex
	rate int64     // bytes a second; 0 = unlimited
	next time.Time // when the bytes reserved so far have left
	// changed is closed (and replaced) when the rate changes, waking every
	// waiter so that a new rate applies at once, not after a long sleep.
	changed chan struct{}
}

func newLimiter(rate int64) *limiter {
	return &limiter{rate: rate, changed: make(chan struct{})}
}

func (l *limiter) setRate(rate int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate = rate
	l.next = time.Time{}
	close(l.changed)
	l.changed = make(chan struct{})
}

// chunk is how many bytes to move at once: about 10 ms worth at the
// current rate, between 1 KiB and 64 KiB.
func (l *limiter) chunk() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rate == 0 {
		return 64 << 10
	}
	return int(min(max(l.rate/100, 1<<10), 64<<10))
}

// wait returns when n bytes may leave.
func (l *limiter) wait(n int) {
	l.mu.Lock()
	if l.rate == 0 {
		l.mu.Unlock()
		return
	}
	if earliest := time.Now().Add(-slack); l.next.Before(earliest) {
		l.next = earliest
	}
	l.next = l.next.Add(time.Duration(float64(n) / float64(l.rate) * float64(time.Second)))
	until, changed := l.next, l.changed
	l.mu.Unlock()
	if d := time.Until(until); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-changed:
		}
	}
}

// listener is one node's side of the throttle.
type listener struct {
	name, addr string
	limit      *limiter
	active     atomic.Int64
	accepted   atomic.Int64
	down, up   atomic.Int64 // bytes to the client, bytes to the upstream
}

// pipe copies from src to dst, paced by limit when it is not nil, counting
// the bytes, then half-closes dst so that the other side sees the end.
func pipe(dst, src net.Conn, limit *limiter, counted *atomic.Int64) {
	buf := make([]byte, 64<<10)
	for {
		size := len(buf)
		if limit != nil {
			size = limit.chunk()
		}
		n, err := src.Read(buf[:size])
		if n > 0 {
			if limit != nil {
				limit.wait(n)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
			counted.Add(int64(n))
		}
		if err != nil {
			break
		}
	}
	if tcp, ok := dst.(*net.TCPConn); ok {
		tcp.CloseWrite()
	}
}

func (l *listener) serve(ln net.Listener, upstream string) {
	for {
		client, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Printf("throttle %s: accept: %v", l.name, err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		l.accepted.Add(1)
		go func() {
			defer client.Close()
			server, err := net.DialTimeout("tcp", upstream, 10*time.Second)
			if err != nil {
				log.Printf("throttle %s: the registry at %s: %v", l.name, upstream, err)
				return
			}
			defer server.Close()
			l.active.Add(1)
			defer l.active.Add(-1)
			done := make(chan struct{})
			go func() {
				pipe(server, client, nil, &l.up)
				close(done)
			}()
			pipe(client, server, l.limit, &l.down)
			<-done
		}()
	}
}

// parseRate reads "25M", "1.5Gi", "800KB/s", "0", "off".
func parseRate(s string) (int64, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "0", "off", "unlimited", "none":
		return 0, nil
	}
	num := strings.TrimSuffix(strings.TrimSuffix(s, "/s"), "B")
	mult := 1.0
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"K", 1e3}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSuffix(num, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a rate: bytes a second, e.g. 25M, 800K, 1Gi, or 0/off for unlimited", s)
	}
	rate := int64(v * mult)
	if v > 0 && rate == 0 {
		rate = 1
	}
	return rate, nil
}

func human(bytes int64) string {
	switch {
	case bytes >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(bytes)/1e9)
	case bytes >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(bytes)/1e6)
	case bytes >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(bytes)/1e3)
	}
	return fmt.Sprintf("%d B", bytes)
}

func describeRate(rate int64) string {
	if rate == 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%s/s (%d bytes a second)", human(rate), rate)
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	upstream := flag.String("upstream", "", "the registry's address, host:port")
	control := flag.String("control", "", "the control API's address, host:port")
	rateFlag := flag.String("rate", "off", "bytes a second per listener (25M, 1Gi, 0/off = unlimited)")
	var listens listFlag
	flag.Var(&listens, "listen", "NAME=host:port, one per node (repeatable)")
	flag.Parse()
	if *upstream == "" || *control == "" || len(listens) == 0 {
		log.Fatal("throttle: -upstream, -control and at least one -listen NAME=host:port are required")
	}
	rate, err := parseRate(*rateFlag)
	if err != nil {
		log.Fatalf("throttle: -rate: %v", err)
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	var listeners []*listener
	var sockets []net.Listener
	for _, spec := range listens {
		name, addr, ok := strings.Cut(spec, "=")
		if !ok {
			log.Fatalf("throttle: -listen %q is not NAME=host:port", spec)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatalf("throttle: listen %s: %v", addr, err)
		}
		l := &listener{name: name, addr: addr, limit: newLimiter(rate)}
		listeners = append(listeners, l)
		sockets = append(sockets, ln)
		go l.serve(ln, *upstream)
	}
	sort.Slice(listeners, func(i, j int) bool { return listeners[i].name < listeners[j].name })
	var current atomic.Int64
	current.Store(rate)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /rate", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, current.Load())
	})
	mux.HandleFunc("PUT /rate", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 100))
		rate, err := parseRate(string(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		current.Store(rate)
		for _, l := range listeners {
			l.limit.setRate(rate)
		}
		log.Printf("throttle: rate now %s per listener", describeRate(rate))
		fmt.Fprintf(w, "rate: %s per node\n", describeRate(rate))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "rate: %s per node, registry -> node only (upstream %s)\n", describeRate(current.Load()), *upstream)
		for _, l := range listeners {
			fmt.Fprintf(w, "%s: %s, %d connections open, %d in all, %s pulled, %s sent\n",
				l.name, l.addr, l.active.Load(), l.accepted.Load(), human(l.down.Load()), human(l.up.Load()))
		}
	})
	server := &http.Server{Addr: *control, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		for _, ln := range sockets {
			ln.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		server.Shutdown(ctx)
	}()
	log.Printf("throttle: %d listeners to %s at %s each; control on %s", len(listeners), *upstream, describeRate(rate), *control)
	if err := server.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatalf("throttle: control %s: %v", *control, err)
	}
	log.Printf("throttle: stopped")
}
