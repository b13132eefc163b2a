package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/spf13/viper"

	"github.com/vsm-relay/relay/backoff"
)

// envName is the variable that overrides the key at path: RELAY_ + the
// path in upper case, "." and "-" made "_", list positions "_<n>":
// amqp.url -> RELAY_AMQP_URL, work[0].target -> RELAY_WORK_0_TARGET. It is
// the mapping viper's SetEnvPrefix + SetEnvKeyReplacer would apply.
func envName(path string) string {
	var b strings.Builder
	b.Grow(len(EnvPrefix) + 1 + len(path))
	b.WriteString(EnvPrefix + "_")
	for _, r := range path {
		switch r {
		case '.', '-', '[':
			b.WriteByte('_')
		case ']':
		default:
			b.WriteRune(unicode.ToUpper(r))
		}
	}
	return b.String()
}

// nonKeyEnv reports whether name is a RELAY_ variable the project reads
// that is no configuration key, so that any other RELAY_ variable naming
// no key can be an error. Variables starting RELAY_TEST_ belong to the
// tests.
func nonKeyEnv(name string) bool {
	switch name {
	case "RELAY_FUZZTIME": // .ci/run: how long each fuzz target runs
		return true
	}
	return strings.HasPrefix(name, "RELAY_TEST_")
}

// environment is the environment a load reads: lookup finds one
// variable; names, when known, lists every variable set, so that a
// RELAY_ variable naming no key can be reported.
type environment struct {
	lookup func(string) (string, bool)
	names  []string // nil: not known, no variable is reported
}

// applyEnv sets in v every override env holds for a key the trees know,
// and reports every non-empty RELAY_ variable that names none.
//
// viper's AutomaticEnv does the same lookup, but only through the process
// environment and only for keys it already holds; walking the schema here
// makes the lookup injectable and reaches keys no layer sets yet (a
// bulkhead's max_waiting, a header of the default target). Overrides are
// decoded like values of the file, by their key.
func applyEnv(v *viper.Viper, sch *node, trees []any, env environment, p *problems) {
	known := make(map[string]bool)
	walk(sch, trees, "", func(path string, n *node) {
		if n.kind == kindList {
			applyListEnv(v, path, n, env.lookup, known, p)
			return
		}
		known[envName(path)] = true
		if val, ok := lookupEnv(path, n.kind, env.lookup, p); ok {
			v.Set(path, val)
		}
	})
	for _, name := range env.names {
		if !strings.HasPrefix(name, EnvPrefix+"_") || known[name] || nonKeyEnv(name) {
			continue
		}
		if s, _ := env.lookup(name); s == "" {
			continue // an empty variable counts as unset
		}
		msg := "no such configuration key"
		if near := nearest(name, slices.Sorted(maps.Keys(known)), 3); near != "" {
			msg += "; did you mean " + near + "?"
		}
		p.Addf(name, "%s", msg)
	}
}

// applyListEnv overrides keys of the entries of a list by position.
func applyListEnv(v *viper.Viper, path string, n *node, env func(string) (string, bool), known map[string]bool, p *problems) {
	items, _ := v.Get(path).([]any)
	out := make([]any, len(items))
	changed := false
	for i, item := range items {
		entry, _ := item.(map[string]any)
		entry = maps.Clone(entry)
		if entry == nil {
			entry = map[string]any{}
		}
		for _, f := range n.elem.fields {
			key := fmt.Sprintf("%s[%d].%s", path, i, f.key)
			known[envName(key)] = true
			if val, ok := lookupEnv(key, f.node.kind, env, p); ok {
				entry[f.key] = val
				changed = true
			}
		}
		out[i] = entry
	}
	if changed {
		v.Set(path, out)
	}
}

// lookupEnv reads and decodes the override of key. An empty variable
// counts as unset, as it does for viper.
func lookupEnv(key string, k kind, env func(string) (string, bool), p *problems) (any, bool) {
	name := envName(key)
	s, ok := env(name)
	if !ok || s == "" {
		return nil, false
	}
	val, msg := parseEnv(s, k)
	if msg != "" {
		p.reject(key, "%s (from %s)", msg, name)
		return nil, false
	}
	return val, true
}

// parseEnv decodes an environment value as the kind its key holds. Lists
// are separated by commas or white space.
func parseEnv(s string, k kind) (any, string) {
	t := strings.TrimSpace(s)
	switch k {
	case kindString:
		return s, ""
	case kindInt:
		i, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			return nil, "must be a whole number, got " + show(s)
		}
		return int(i), ""
	case kindFloat:
		f, err := strconv.ParseFloat(t, 64)
		if err != nil {
			return nil, "must be a number, got " + show(s)
		}
		return f, ""
	case kindBool:
		b, err := strconv.ParseBool(t)
		if err != nil {
			return nil, "must be true or false, got " + show(s)
		}
		return b, ""
	case kindDuration:
		return parseDuration(t)
	case kindJitter:
		j, err := backoff.ParseJitter(t)
		if err != nil {
			return nil, err.Error()
		}
		return j, ""
	case kindStringList, kindDurationList:
		fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		out := make([]any, len(fields))
		for i, f := range fields {
			out[i] = f
			if k == kindDurationList {
				d, msg := parseDuration(f)
				if msg != "" {
					return nil, fmt.Sprintf("item %d: %s", i, msg)
				}
				out[i] = d
			}
		}
		return out, ""
	}
	return nil, "cannot be set from the environment"
}
