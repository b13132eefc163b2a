package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLogsWriteDurationsWithUnits(t *testing.T) {
	tests := []struct {
		format   string
		terminal bool
		want     []string
	}{
		{"json", false, []string{`"took":"1.5s"`, `"backoff":{"next":"250ms"}`, `"attempts":3`}},
		{"auto", false, []string{`"took":"1.5s"`, `"backoff":{"next":"250ms"}`}},
		{"text", false, []string{"took=1.5s", "backoff.next=250ms", "attempts=3"}},
		{"auto", true, []string{"took=1.5s", "backoff.next=250ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var b bytes.Buffer
			log, err := newLoggerTo(&b, tt.terminal, "info", tt.format)
			if err != nil {
				t.Fatal(err)
			}
			log.Info("retry", "took", 1500*time.Millisecond, "attempts", 3,
				slog.Group("backoff", "next", 250*time.Millisecond))
			log.With("window", time.Minute).Info("breaker")
			out := b.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %s:\n%s", w, out)
				}
			}
			if strings.Contains(out, "1500000000") || strings.Contains(out, "60000000000") {
				t.Errorf("a duration is written in nanoseconds:\n%s", out)
			}
			if !strings.Contains(out, "1m0s") {
				t.Errorf("a duration from With is not written with units:\n%s", out)
			}
		})
	}
}

func TestLoggerRefusesBadLevelAndFormat(t *testing.T) {
	var b bytes.Buffer
	if _, err := newLoggerTo(&b, false, "loud", "json"); err == nil || err.Error() != `--log-level: "loud" is not debug, info, warn or error` {
		t.Errorf("bad level: %v", err)
	}
	if _, err := newLoggerTo(&b, false, "info", "xml"); err == nil || err.Error() != "--log-format: want json, text or auto" {
		t.Errorf("bad format: %v", err)
	}
}

func TestVersionCommandPrintsWhatTheFlagPrints(t *testing.T) {
	code, flagOut, _ := runExe(t, nil, "--version")
	if code != 0 || flagOut != "relay version dev\n" {
		t.Fatalf("--version: exit %d, stdout %q", code, flagOut)
	}
	code, cmdOut, errOut := runExe(t, nil, "version")
	if code != 0 || cmdOut != flagOut || errOut != "" {
		t.Fatalf("version: exit %d, stdout %q, stderr %q; want 0 and %q", code, cmdOut, errOut, flagOut)
	}
	if code, _, _ := runExe(t, nil, "version", "extra"); code != 2 {
		t.Fatalf("version extra: exit %d, want 2", code)
	}
}
