package config

import (
	"maps"
	"slices"
	"strings"

	"github.com/vsm-relay/relay/internal/fielderr"
)

// ExpandedHeaders returns t's headers with every ${VAR} replaced by the
// value env gives for VAR ("$${" stands for a literal "${"). Every
// variable env does not know, and every malformed reference, is reported
// as a *fielderr.Error keyed targets.<name>.headers.<header>; the messages
// name variables, never values.
func (t Target) ExpandedHeaders(env func(string) (string, bool)) (map[string]string, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	var l fielderr.List
	out := make(map[string]string, len(t.Headers))
	for _, name := range slices.Sorted(maps.Keys(t.Headers)) {
		key := "targets." + t.Name + ".headers." + name
		v, missing, msg := expand(t.Headers[name], env)
		switch {
		case msg != "":
			l.Addf(key, "%s", msg)
		case len(missing) > 0:
			for _, m := range missing {
				l.Addf(key, "environment variable %s is not set", m)
			}
		case checkHeaderValue(v) != "":
			l.Addf(key, "after expansion %s", checkHeaderValue(v))
		default:
			out[name] = v
		}
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// expand replaces the ${VAR} references of s. It returns the variables env
// lacks, or what is wrong with the references' syntax.
func expand(s string, env func(string) (string, bool)) (out string, missing []string, msg string) {
	if !strings.Contains(s, "${") {
		return s, nil, ""
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", nil, "the value has a \"${\" without its \"}\" (write \"$${\" for a literal \"${\")"
			}
			name := s[i+2 : i+2+end]
			if !isVarName(name) {
				return "", nil, "the value has a ${...} whose variable name is not letters, digits and \"_\""
			}
			v, ok := env(name)
			if !ok {
				missing = append(missing, name)
			}
			b.WriteString(v)
			i += 2 + end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), missing, ""
}

func isVarName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}
