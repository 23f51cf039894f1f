// testapp is the application of the real-node stories. MODE chooses what it
// is; the production-shaped pod (examples/production-pod.yaml) uses all three.
//
// MODE=app (the default): an HTTP server that answers with its version, has
// a readiness endpoint that can be told to fail, and finishes the requests
// in flight when it gets SIGTERM.
//
//	GET  /            "version=<VERSION> pod=<hostname>" (and " config=<first
//	                  line of CONFIG_FILE>" when CONFIG_FILE is set);
//	                  ?delay_ms=N answers after N ms
//	GET  /ready       200, or 503 after POST /ready/fail (POST /ready/pass
//	                  undoes it), while CONFIG_FILE is set but missing, and
//	                  after SIGTERM
//	GET  /healthz     200 while the process runs
//	GET  /prestop     logs "preStop hook" (for a preStop httpGet hook)
//
// MODE=proxy: a sidecar proxy on PORT (15001 unless set) that forwards every
// request to UPSTREAM (http://127.0.0.1:8080, the app in the same pod) but
// its own GET /ready, /healthz and /prestop. Its /ready is 503 until
// WARMUP_SECONDS (0; fractions allowed) have passed since it started and
// while UPSTREAM's /ready does not answer 200, so the pod is not Ready while
// its app restarts. On SIGTERM it finishes the requests in flight, as the
// app does.
//
// MODE=init: an init container: sleeps INIT_SECONDS (1; fractions allowed)
// and exits 0.
//
// Environment for every mode: VERSION (set in the image), PORT (8080; the
// proxy's 15001), CRASH=1 exits with status 1 at once (the crashing image),
// SHUTDOWN_SECONDS (30) bounds the wait for requests in flight after SIGTERM.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// seconds reads a duration in (fractional) seconds from the environment.
func seconds(name string, fallback float64) time.Duration {
	v, err := strconv.ParseFloat(env(name, ""), 64)
	if err != nil || v < 0 {
		v = fallback
	}
	return time.Duration(v * float64(time.Second))
}

// firstLine is the first line of the file at path, or an error when it
// cannot be read (a ConfigMap volume not mounted yet, a key removed).
func firstLine(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func main() {
	version := env("VERSION", "unknown")
	if os.Getenv("CRASH") == "1" {
		log.Printf("testapp %s: CRASH=1, exiting with status 1", version)
		os.Exit(1)
	}
	switch mode := env("MODE", "app"); mode {
	case "app":
		serve(version, "testapp "+version, env("PORT", "8080"), appHandler)
	case "proxy":
		serve(version, "testapp "+version+" proxy", env("PORT", "15001"), proxyHandler)
	case "init":
		d := seconds("INIT_SECONDS", 1)
		log.Printf("testapp %s init: sleeping %v", version, d)
		time.Sleep(d)
		log.Printf("testapp %s init: done", version)
	default:
		log.Printf("testapp %s: unknown MODE %q (app, proxy or init)", version, mode)
		os.Exit(2)
	}
}

// appHandler is MODE=app's server. stopping turns true on SIGTERM.
func appHandler(version, who string, stopping *atomic.Bool, served *atomic.Int64) http.Handler {
	host, _ := os.Hostname()
	configFile := os.Getenv("CONFIG_FILE")
	var failing atomic.Bool

	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		if ms, err := strconv.Atoi(r.URL.Query().Get("delay_ms")); err == nil && ms > 0 {
			time.Sleep(time.Duration(min(ms, 10_000)) * time.Millisecond)
		}
		served.Add(1)
		config := ""
		if configFile != "" {
			line, err := firstLine(configFile)
			if err != nil {
				line = "<" + err.Error() + ">"
			}
			config = " config=" + line
		}
		fmt.Fprintf(w, "version=%s pod=%s%s\n", version, host, config)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case stopping.Load():
			http.Error(w, "stopping (SIGTERM)", http.StatusServiceUnavailable)
		case failing.Load():
			http.Error(w, "readiness failing (POST /ready/pass to undo)", http.StatusServiceUnavailable)
		case configFile != "":
			if _, err := os.Stat(configFile); err != nil {
				http.Error(w, "CONFIG_FILE: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ready")
		default:
			fmt.Fprintln(w, "ready")
		}
	})
	mux.HandleFunc("POST /ready/fail", func(w http.ResponseWriter, r *http.Request) {
		failing.Store(true)
		fmt.Fprintln(w, "readiness now fails")
	})
	mux.HandleFunc("POST /ready/pass", func(w http.ResponseWriter, r *http.Request) {
		failing.Store(false)
		fmt.Fprintln(w, "readiness now passes")
	})
	// A preStop hook (the image has no shell for an exec hook): logged, so a
	// test can see it ran before SIGTERM.
	mux.HandleFunc("GET /prestop", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s: preStop hook", who)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// proxyHandler is MODE=proxy's server.
func proxyHandler(version, who string, stopping *atomic.Bool, served *atomic.Int64) http.Handler {
	started := time.Now()
	warmup := seconds("WARMUP_SECONDS", 0)
	upstream, err := url.Parse(env("UPSTREAM", "http://127.0.0.1:8080"))
	if err != nil || upstream.Host == "" {
		log.Fatalf("%s: UPSTREAM %q is not a URL such as http://127.0.0.1:8080", who, os.Getenv("UPSTREAM"))
	}
	ready := upstream.JoinPath("/ready").String()
	check := &http.Client{Timeout: time.Second}
	forward := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(upstream)
			r.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Printf("%s: %s %s: %v", who, r.Method, r.URL.Path, err)
			http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		},
	}
	log.Printf("%s: forwarding to %s, ready %v after start once %s answers 200", who, upstream, warmup, ready)

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		forward.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if stopping.Load() {
			http.Error(w, "stopping (SIGTERM)", http.StatusServiceUnavailable)
			return
		}
		if left := warmup - time.Since(started); left > 0 {
			http.Error(w, fmt.Sprintf("warming up: %.1fs left", left.Seconds()), http.StatusServiceUnavailable)
			return
		}
		resp, err := check.Get(ready)
		if err != nil {
			http.Error(w, "upstream not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			http.Error(w, fmt.Sprintf("upstream not ready: %s answers %s", ready, resp.Status), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /prestop", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s: preStop hook", who)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// serve runs the server that handler builds on port until SIGTERM or
// SIGINT, then finishes the requests in flight (SHUTDOWN_SECONDS at most).
func serve(version, who, port string, handler func(string, string, *atomic.Bool, *atomic.Int64) http.Handler) {
	var stopping atomic.Bool
	var served atomic.Int64
	server := &http.Server{Addr: ":" + port, Handler: handler(version, who, &stopping, &served), ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		s := <-stop
		log.Printf("%s: %v, finishing requests in flight", who, s)
		stopping.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), seconds("SHUTDOWN_SECONDS", 30))
		defer cancel()
		if err := server.Shutdown(ctx); err != nil {
			log.Printf("%s: shutdown: %v", who, err)
		}
		close(done)
	}()
	log.Printf("%s listening on %s", who, server.Addr)
	if err := server.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatalf("%s: %v", who, err)
	}
	<-done
	log.Printf("%s: stopped after %d requests", who, served.Load())
}
