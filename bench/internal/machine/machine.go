package machine

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Machine is what the figures were measured on.
type Machine struct {
	CPU        string
	Cores      int
	GOMAXPROCS int
	Go         string
	RabbitMQ   string
	Erlang     string
}

// CPUModel returns the first "model name" of /proc/cpuinfo text.
func CPUModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Read describes this machine, the go command on its PATH and the broker
// whose connection properties are serverProps.
func Read(ctx context.Context, serverProps map[string]any) Machine {
	m := Machine{Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = CPUModel(b)
	}
	if m.CPU == "" {
		m.CPU = runtime.GOARCH
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		m.Go = strings.TrimSpace(string(out))
	}
	if v, ok := serverProps["version"].(string); ok {
		m.RabbitMQ = v
	}
	if v, ok := serverProps["platform"].(string); ok {
		m.Erlang = v
	}
	return m
}
