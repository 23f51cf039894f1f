// testapp is the application of the real-node stories: an HTTP server that
// answers with its version, has a readiness endpoint that can be told to
// fail, and finishes the requests in flight when it gets SIGTERM.
//
//	GET  /            "version=<VERSION> pod=<hostname>"; ?delay_ms=N answers after N ms
//	GET  /ready       200, or 503 after POST /ready/fail (POST /ready/pass undoes it)
//	GET  /healthz     200 while the process runs
//	GET  /prestop     logs "preStop hook" (for a preStop httpGet hook)
//
// Environment: VERSION (set in the image), PORT (8080), CRASH=1 exits with
// status 1 at once (the crashing image), SHUTDOWN_SECONDS (30) bounds the
// wait for requests in flight after SIGTERM.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
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

func main() {
	version := env("VERSION", "unknown")
	if os.Getenv("CRASH") == "1" {
		log.Printf("testapp %s: CRASH=1, exiting with status 1", version)
		os.Exit(1)
	}
	host, _ := os.Hostname()
	var failing atomic.Bool
	var served atomic.Int64

	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		if ms, err := strconv.Atoi(r.URL.Query().Get("delay_ms")); err == nil && ms > 0 {
			time.Sleep(time.Duration(min(ms, 10_000)) * time.Millisecond)
		}
		served.Add(1)
		fmt.Fprintf(w, "version=%s pod=%s\n", version, host)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "readiness failing (POST /ready/pass to undo)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
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
		log.Printf("testapp %s: preStop hook", version)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})

	server := &http.Server{Addr: ":" + env("PORT", "8080"), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		s := <-stop
		log.Printf("testapp %s: %v, finishing requests in flight", version, s)
		failing.Store(true)
		seconds, err := strconv.Atoi(env("SHUTDOWN_SECONDS", "30"))
		if err != nil {
			seconds = 30
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second)
		defer cancel()
		if err := server.Shutdown(ctx); err != nil {
			log.Printf("testapp %s: shutdown: %v", version, err)
		}
		close(done)
	}()
	log.Printf("testapp %s listening on %s", version, server.Addr)
	if err := server.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatalf("testapp %s: %v", version, err)
	}
	<-done
	log.Printf("testapp %s: stopped after %d requests", version, served.Load())
}
