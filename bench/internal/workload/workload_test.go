package workload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

func TestIDRoundTrip(t *testing.T) {
	tests := []struct {
		seq  uint64
		sent time.Duration
		id   string
	}{
		{1, 0, "1.0"},
		{36, 36 * time.Nanosecond, "10.10"},
		{123456, 1500 * time.Millisecond, "2n9c.ot27eo"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if got := EncodeID(tt.seq, tt.sent); got != tt.id {
				t.Errorf("EncodeID = %q, want %q", got, tt.id)
			}
			seq, sent, err := DecodeID(tt.id)
			if err != nil || seq != tt.seq || sent != tt.sent {
				t.Errorf("DecodeID = %d, %v, %v; want %d, %v", seq, sent, err, tt.seq, tt.sent)
			}
		})
	}
}

func TestDecodeIDRejects(t *testing.T) {
	for _, id := range []string{"", "abc", "1.", ".1", "1.-5", "1.2.3", "zz!.1"} {
		if _, _, err := DecodeID(id); !errors.Is(err, ErrBadID) {
			t.Errorf("DecodeID(%q) err = %v, want ErrBadID", id, err)
		}
	}
}

func FuzzDecodeID(f *testing.F) {
	f.Add("2n9c.ot27eo")
	f.Add("1.0")
	f.Fuzz(func(t *testing.T, id string) {
		seq, sent, err := DecodeID(id)
		if err != nil {
			return
		}
		if sent < 0 {
			t.Fatalf("negative send time from %q", id)
		}
		seq2, sent2, err := DecodeID(EncodeID(seq, sent))
		if err != nil || seq2 != seq || sent2 != sent {
			t.Fatalf("%q does not round-trip: %d %v %v", id, seq2, sent2, err)
		}
	})
}

func TestWatchDepth(t *testing.T) {
	counts := []int{0, 10, 40, 100, 150}
	i := 0
	depth := func() (int, error) {
		n := counts[min(i, len(counts)-1)]
		i++
		return n, nil
	}
	points, err := WatchDepth(context.Background(), depth, 100, time.Microsecond, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]int, len(points))
	for k, p := range points {
		got[k] = p.Count
	}
	if fmt.Sprint(got) != "[0 10 40 100]" {
		t.Errorf("polled counts %v, want [0 10 40 100]", got)
	}
	for k := 1; k < len(points); k++ {
		if points[k].At < points[k-1].At {
			t.Errorf("offsets go back: %v", points)
		}
	}
}

func TestWatchDepthFails(t *testing.T) {
	boom := errors.New("boom")
	_, err := WatchDepth(context.Background(), func() (int, error) { return 0, boom }, 1, time.Microsecond, time.Minute)
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want boom", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	points, err := WatchDepth(ctx, func() (int, error) { return 3, nil }, 10, time.Hour, time.Hour)
	if !errors.Is(err, context.Canceled) || len(points) != 1 || points[0].Count != 3 {
		t.Errorf("cancelled watch = %v, %v", points, err)
	}
}

func TestEcho(t *testing.T) {
	e, err := StartEcho()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	body := bytes.Repeat([]byte("x"), 256)
	for range 3 {
		resp, err := http.Post(e.URL(), "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, body) || resp.Header.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("echo answered %d %q with %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(got))
		}
	}
	if e.Requests() != 3 {
		t.Errorf("Requests = %d, want 3", e.Requests())
	}
}

func TestTaskResultRate(t *testing.T) {
	r := TaskResult{Replies: 7000, Window: 2 * time.Second}
	if r.Rate() != 3500 {
		t.Errorf("Rate = %v, want 3500", r.Rate())
	}
	if (TaskResult{Replies: 5}).Rate() != 0 {
		t.Error("Rate without a window is not 0")
	}
}

func ExampleEncodeID() {
	id := EncodeID(42, 1500*time.Millisecond)
	seq, sent, _ := DecodeID(id)
	fmt.Println(id, seq, sent)
	// Output: 16.ot27eo 42 1.5s
}
