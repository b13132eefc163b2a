package admin

import (
	"strings"
	"testing"
)

func TestBearer(t *testing.T) {
	tests := []struct {
		header, want string
		ok           bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Basic abc", "", false},
		{"", "", false},
		{"abc", "", false},
	}
	for _, tt := range tests {
		got, ok := bearer(tt.header)
		if got != tt.want || ok != tt.ok {
			t.Errorf("bearer(%q) = %q, %v; want %q, %v", tt.header, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  x", "Basic x", "", "Bearer"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := bearer(header)
		if ok != (token != "") {
			t.Fatalf("bearer(%q) = %q, %v: ok must say whether there is a token", header, token, ok)
		}
		if ok && (!strings.Contains(header, token) || strings.TrimSpace(token) != token) {
			t.Fatalf("bearer(%q) = %q: not a trimmed part of the header", header, token)
		}
	})
}
