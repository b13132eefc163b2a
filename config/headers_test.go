package config

import (
	"reflect"
	"testing"

	"github.com/vsm-relay/relay/internal/fielderr"
)

func TestExpandedHeaders(t *testing.T) {
	env := envOf(map[string]string{"TOKEN": "abc", "USER_1": "ann", "EMPTY": "", "NL": "a\r\nX-Evil: 1"})
	tests := []struct {
		name    string
		headers map[string]string
		want    map[string]string
		errs    []string
	}{
		{"none", map[string]string{}, map[string]string{}, nil},
		{"plain", map[string]string{"x-a": "v"}, map[string]string{"x-a": "v"}, nil},
		{"whole value", map[string]string{"authorization": "${TOKEN}"}, map[string]string{"authorization": "abc"}, nil},
		{"inside text, twice", map[string]string{"x-a": "Bearer ${TOKEN}/${USER_1}"}, map[string]string{"x-a": "Bearer abc/ann"}, nil},
		{"set but empty", map[string]string{"x-a": "<${EMPTY}>"}, map[string]string{"x-a": "<>"}, nil},
		{"literal", map[string]string{"x-a": "$${TOKEN} costs $5"}, map[string]string{"x-a": "${TOKEN} costs $5"}, nil},
		{"missing", map[string]string{"authorization": "Bearer ${NOPE}", "x-b": "${TOKEN}${ALSO_NOPE}"}, nil, []string{
			"targets.api.headers.authorization: environment variable NOPE is not set",
			"targets.api.headers.x-b: environment variable ALSO_NOPE is not set",
		}},
		{"unterminated", map[string]string{"x-a": "${TOKEN"}, nil, []string{
			`targets.api.headers.x-a: the value has a "${" without its "}" (write "$${" for a literal "${")`,
		}},
		{"bad name", map[string]string{"x-a": "${1X}"}, nil, []string{
			`targets.api.headers.x-a: the value has a ${...} whose variable name is not letters, digits and "_"`,
		}},
		{"line break after expansion", map[string]string{"x-a": "${NL}"}, nil, []string{
			"targets.api.headers.x-a: after expansion the value holds a line break or NUL",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := Target{Name: "api", Headers: tt.headers}
			got, err := tg.ExpandedHeaders(env)
			if lines := fielderr.Lines(err); !reflect.DeepEqual(lines, tt.errs) {
				t.Errorf("problems %q, want %q", lines, tt.errs)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("headers %q, want %q", got, tt.want)
			}
			if tt.headers["x-a"] != "" && tg.Headers["x-a"] != tt.headers["x-a"] {
				t.Errorf("ExpandedHeaders changed the target's raw headers")
			}
		})
	}
}

func TestExpandedHeadersNilEnv(t *testing.T) {
	_, err := Target{Name: "api", Headers: map[string]string{"a": "${X}"}}.ExpandedHeaders(nil)
	want := []string{"targets.api.headers.a: environment variable X is not set"}
	if got := fielderr.Lines(err); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
