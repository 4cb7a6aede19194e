// A receiver for the benchmarks that is never the bottleneck: a compiled server that
// answers 204 to any POST and records when each delivery arrived, by its webhook-id.
//
//	receiver -listen 127.0.0.1:PORT      serve
//	receiver -selftest -requests N -concurrency C
//	                                     measure its own capacity on loopback and exit
//
// GET /stats returns {"count", "first", "last"} (epoch seconds); GET /arrivals returns
// {webhook-id: [epoch seconds, ...]} so latency can be computed per delivery.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

type recorder struct {
	mu       sync.Mutex
	count    int
	conns    int
	first    float64
	last     float64
	arrivals map[string][]float64
}

func now() float64 { return float64(time.Now().UnixNano()) / 1e9 }

func (r *recorder) record(id string) {
	t := now()
	r.mu.Lock()
	if r.count == 0 {
		r.first = t
	}
	r.count++
	r.last = t
	r.arrivals[id] = append(r.arrivals[id], t)
	r.mu.Unlock()
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch {
	case req.Method == http.MethodPost:
		// Read the whole body, as a real receiver would before answering.
		_, _ = io.Copy(io.Discard, req.Body)
		r.record(req.Header.Get("webhook-id"))
		w.WriteHeader(http.StatusNoContent)
	case req.Method == http.MethodGet && req.URL.Path == "/stats":
		r.mu.Lock()
		body, _ := json.Marshal(map[string]any{
			"count": r.count, "first": r.first, "last": r.last, "connections": r.conns,
		})
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	case req.Method == http.MethodGet && req.URL.Path == "/arrivals":
		r.mu.Lock()
		body, _ := json.Marshal(r.arrivals)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	default:
		http.NotFound(w, req)
	}
}

// countConnections shows whether senders reuse connections (keep-alive) or open new ones.
func (r *recorder) countConnections(_ net.Conn, state http.ConnState) {
	if state == http.StateNew {
		r.mu.Lock()
		r.conns++
		r.mu.Unlock()
	}
}

func newRecorder() *recorder { return &recorder{arrivals: make(map[string][]float64)} }

// selftest serves on an ephemeral loopback port and drives it with C keep-alive clients:
// the figure shows how far above the pipeline's throughput the receiver's own limit is.
func selftest(requests, concurrency int) error {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	rec := newRecorder()
	go func() { _ = http.Serve(listener, rec) }()
	url := "http://" + listener.Addr().String() + "/selftest"
	body := []byte(`{"type":"bench.event","data":{"x":"` + strings.Repeat("y", 900) + `"}}`)
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency,
	}}
	jobs := make(chan int)
	var wg sync.WaitGroup
	var failures int64
	var fmu sync.Mutex
	started := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("webhook-id", fmt.Sprintf("msg_%d", n))
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusNoContent {
					fmu.Lock()
					failures++
					fmu.Unlock()
				}
			}
		}()
	}
	for n := 0; n < requests; n++ {
		jobs <- n
	}
	close(jobs)
	wg.Wait()
	seconds := time.Since(started).Seconds()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"requests":         requests,
		"concurrency":      concurrency,
		"seconds":          seconds,
		"requests_per_sec": float64(requests) / seconds,
		"failures":         failures,
		"received":         rec.count,
	})
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on (loopback only)")
	self := flag.Bool("selftest", false, "measure this receiver's capacity and exit")
	requests := flag.Int("requests", 50000, "selftest: requests to send")
	concurrency := flag.Int("concurrency", 50, "selftest: requests in flight")
	flag.Parse()
	if *self {
		if err := selftest(*requests, *concurrency); err != nil {
			log.Fatal(err)
		}
		return
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("refusing to listen on %q: benchmarks stay on loopback", *listen)
	}
	rec := newRecorder()
	server := &http.Server{Addr: *listen, Handler: rec, ConnState: rec.countConnections}
	log.Fatal(server.ListenAndServe())
}
