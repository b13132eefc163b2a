package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"
)

// Settings are the faults the service injects. The zero value answers
// every request at once and successfully.
type Settings struct {
	// FailureRate is the share of requests answered with FailureStatus,
	// from 0 (none) to 1 (all).
	FailureRate float64
	// Latency is added before every answer, failures included.
	Latency time.Duration
	// FailureStatus is the status of an injected failure; 0 means 503.
	FailureStatus int
}

// maxLatency keeps a typo ("200s" for "200ms") from hanging the demo for
// hours.
const maxLatency = 10 * time.Minute

// maxBody bounds the request body the service reads.
const maxBody = 8 << 20

// Validate reports the first bad field by its JSON name.
func (s Settings) Validate() error {
	switch {
	case !(s.FailureRate >= 0 && s.FailureRate <= 1):
		return fmt.Errorf("failure_rate: want a number from 0 to 1, got %v", s.FailureRate)
	case s.Latency < 0 || s.Latency > maxLatency:
		return fmt.Errorf("latency: want 0s to %s, got %s", maxLatency, s.Latency)
	case s.FailureStatus != 0 && (s.FailureStatus < 400 || s.FailureStatus > 599):
		return fmt.Errorf("failure_status: want 400 to 599, got %d", s.FailureStatus)
	}
	return nil
}

func (s Settings) status() int {
	if s.FailureStatus == 0 {
		return http.StatusServiceUnavailable
	}
	return s.FailureStatus
}

// wireSettings is Settings as GET and POST /admin/config write them.
type wireSettings struct {
	FailureRate   float64 `json:"failure_rate"`
	Latency       string  `json:"latency"`
	FailureStatus int     `json:"failure_status"`
}

func (s Settings) wire() wireSettings {
	return wireSettings{FailureRate: s.FailureRate, Latency: s.Latency.String(), FailureStatus: s.status()}
}

// settingsPatch is a POST /admin/config body: absent fields keep their
// value.
type settingsPatch struct {
	FailureRate   *float64 `json:"failure_rate"`
	Latency       *string  `json:"latency"`
	FailureStatus *int     `json:"failure_status"`
}

func (p settingsPatch) apply(s Settings) (Settings, error) {
	if p.FailureRate != nil {
		s.FailureRate = *p.FailureRate
	}
	if p.Latency != nil {
		d, err := time.ParseDuration(*p.Latency)
		if err != nil {
			return s, fmt.Errorf("latency: want a duration such as \"200ms\", got %q", *p.Latency)
		}
		s.Latency = d
	}
	if p.FailureStatus != nil {
		s.FailureStatus = *p.FailureStatus
	}
	return s, s.Validate()
}

// Stats count what the service answered since it started.
type Stats struct {
	Requests uint64 `json:"requests"`
	Failures uint64 `json:"failures"`
}

// Server is the demo downstream. Make one with NewServer; it is safe for
// concurrent use.
type Server struct {
	settings atomic.Pointer[Settings]
	requests atomic.Uint64
	failures atomic.Uint64
	log      *slog.Logger
	// random returns a number in [0, 1); a failure is injected when it is
	// below the failure rate.
	random func() float64
}

// NewServer returns a Server with the given starting settings. A nil
// random uses math/rand/v2; a nil log discards.
func NewServer(s Settings, random func() float64, log *slog.Logger) (*Server, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if random == nil {
		random = rand.Float64
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &Server{random: random, log: log}
	srv.settings.Store(&s)
	return srv, nil
}

// Settings returns the current settings.
func (s *Server) Settings() Settings { return *s.settings.Load() }

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Failures: s.failures.Load()}
}

// Handler routes:
//
//	GET  /healthz        200 "ok"
//	GET  /admin/config   the current settings
//	POST /admin/config   change some settings: {"failure_rate":0.5,"latency":"200ms","failure_status":500}
//	GET  /admin/stats    requests and failures so far
//	/admin/...           404; /admin/config with another method 405
//	any other path       the echo: after the latency, either the injected
//	                     failure or 200 with the request echoed as JSON
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /admin/config", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Settings().wire())
	})
	mux.HandleFunc("POST /admin/config", s.changeSettings)
	mux.HandleFunc("GET /admin/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("/admin/config", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", "GET, POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET or POST"})
	})
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "admin endpoints: /admin/config, /admin/stats"})
	})
	mux.HandleFunc("/", s.echo)
	return mux
}

func (s *Server) changeSettings(w http.ResponseWriter, r *http.Request) {
	var p settingsPatch
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want a JSON object with failure_rate, latency and/or failure_status: " + err.Error()})
		return
	}
	for {
		old := s.settings.Load()
		next, err := p.apply(*old)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if s.settings.CompareAndSwap(old, &next) {
			s.log.Info("settings changed", "failure_rate", next.FailureRate, "latency", next.Latency.String(), "failure_status", next.status())
			writeJSON(w, http.StatusOK, next.wire())
			return
		}
	}
}

// echoReply is what a successful request gets back.
type echoReply struct {
	// Echo is the request body: as JSON when it is JSON, else as a string.
	Echo           any    `json:"echo"`
	Method         string `json:"method"`
	Path           string `json:"path"`
	ContentType    string `json:"content_type,omitempty"`
	CorrelationID  string `json:"correlation_id,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

func (s *Server) echo(w http.ResponseWriter, r *http.Request) {
	set := s.Settings()
	s.requests.Add(1)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "body over 8 MiB"})
			return
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading the body: " + err.Error()})
		return
	}
	if set.Latency > 0 {
		t := time.NewTimer(set.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if set.FailureRate > 0 && s.random() < set.FailureRate {
		s.failures.Add(1)
		writeJSON(w, set.status(), map[string]string{"error": "injected failure"})
		return
	}
	reply := echoReply{
		Echo:           string(body),
		Method:         r.Method,
		Path:           r.URL.Path,
		ContentType:    r.Header.Get("Content-Type"),
		CorrelationID:  r.Header.Get("X-Correlation-ID"),
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
	}
	if len(body) > 0 && json.Valid(body) {
		reply.Echo = json.RawMessage(body)
	}
	writeJSON(w, http.StatusOK, reply)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
