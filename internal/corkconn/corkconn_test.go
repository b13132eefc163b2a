package corkconn

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func TestCorkConnKeepsOrderAndBytes(t *testing.T) {
	client, server := net.Pipe()
	cc := newCorkConn(client)
	var got bytes.Buffer
	read := make(chan struct{})
	go func() {
		_, _ = io.Copy(&got, server)
		close(read)
	}()
	var want bytes.Buffer
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				// Hold mu across Write so want records the order writes
				// entered the cork.
				mu.Lock()
				frame := []byte(fmt.Sprintf("<%d:%d>", w, i))
				want.Write(frame)
				if _, err := cc.Write(frame); err != nil {
					t.Errorf("Write: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	server.Close()
	<-read
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("bytes differ: got %d, want %d", got.Len(), want.Len())
	}
}

func TestCorkConnReportsAWriteError(t *testing.T) {
	client, server := net.Pipe()
	server.Close()
	cc := newCorkConn(client)
	defer cc.Close()
	_, _ = cc.Write([]byte("x")) // accepted; the flusher then fails
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := cc.Write([]byte("y")); err != nil {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("a broken connection kept accepting writes")
}
