package workload

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Echo is the downstream both implementations call: POST returns the
// request body with the request's Content-Type, status 200.
type Echo struct {
	srv      *http.Server
	ln       net.Listener
	requests atomic.Uint64
	done     chan struct{}
	bufs     sync.Pool
}

// StartEcho serves on a free port of 127.0.0.1 until Close.
func StartEcho() (*Echo, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &Echo{ln: ln, done: make(chan struct{})}
	e.bufs.New = func() any { return new(bytes.Buffer) }
	e.srv = &http.Server{Handler: http.HandlerFunc(e.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(e.done)
		_ = e.srv.Serve(ln)
	}()
	return e, nil
}

// URL is where to POST.
func (e *Echo) URL() string { return "http://" + e.ln.Addr().String() + "/" }

// Requests counts the requests answered so far.
func (e *Echo) Requests() uint64 { return e.requests.Load() }

func (e *Echo) serve(w http.ResponseWriter, r *http.Request) {
	buf := e.bufs.Get().(*bytes.Buffer)
	defer e.bufs.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	e.requests.Add(1)
	_, _ = w.Write(buf.Bytes())
}

// Close stops the server and waits for it.
func (e *Echo) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := e.srv.Shutdown(ctx)
	<-e.done
	return err
}
