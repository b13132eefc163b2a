package config

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/internal/fielderr"
)

// kind is what a key of the file holds.
type kind uint8

const (
	kindString kind = iota
	kindInt
	kindFloat
	kindBool
	kindDuration
	kindJitter
	kindStringList
	kindDurationList
	kindStruct    // a fixed set of keys
	kindNamed     // entries by name, each a struct
	kindStringMap // free string keys with string values (headers)
	kindList      // a list of structs
)

// node is the schema of one key, read from the types of Config.
type node struct {
	kind   kind
	fields []field // kindStruct
	elem   *node   // kindNamed, kindList: the schema of one entry
}

type field struct {
	key  string
	node *node
}

func (n *node) field(key string) *node {
	for _, f := range n.fields {
		if f.key == key {
			return f.node
		}
	}
	return nil
}

// tagName is the struct tag that renames a field's key, or with "-"
// makes the field no key at all.
const tagName = "config"

// schema returns the file's schema. It is built from the types on every
// load, which costs microseconds and keeps the package free of globals.
func schema() *node { return schemaOf(reflect.TypeFor[Config]()) }

func schemaOf(t reflect.Type) *node {
	switch t {
	case reflect.TypeFor[time.Duration]():
		return &node{kind: kindDuration}
	case reflect.TypeFor[backoff.Jitter]():
		return &node{kind: kindJitter}
	case reflect.TypeFor[[]time.Duration]():
		return &node{kind: kindDurationList}
	case reflect.TypeFor[[]string]():
		return &node{kind: kindStringList}
	case reflect.TypeFor[map[string]string]():
		return &node{kind: kindStringMap}
	}
	switch t.Kind() {
	case reflect.String:
		return &node{kind: kindString}
	case reflect.Int, reflect.Int64:
		return &node{kind: kindInt}
	case reflect.Float64:
		return &node{kind: kindFloat}
	case reflect.Bool:
		return &node{kind: kindBool}
	case reflect.Map:
		return &node{kind: kindNamed, elem: schemaOf(t.Elem())}
	case reflect.Slice:
		return &node{kind: kindList, elem: schemaOf(t.Elem())}
	case reflect.Struct:
		n := &node{kind: kindStruct}
		for i := range t.NumField() {
			if key := keyOf(t.Field(i)); key != "" {
				n.fields = append(n.fields, field{key: key, node: schemaOf(t.Field(i).Type)})
			}
		}
		return n
	}
	// Unreachable while Config holds only the kinds above; a new field of
	// another type fails the package's tests here.
	return &node{kind: kindString}
}

// keyOf is the key of a struct field in the file: its `config` tag, else
// its name in snake case (CAFile is ca_file, MinPerSecond min_per_second);
// "" for an unexported field or one tagged "-".
func keyOf(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	switch tag := f.Tag.Get(tagName); tag {
	case "-":
		return ""
	case "":
		return snake(f.Name)
	default:
		return tag
	}
}

// snake writes a Go name in snake case. An upper-case letter starts a word
// after a lower-case letter or digit, and ends a run of capitals when a
// lower-case letter follows it: URL is url, CAFile ca_file.
func snake(name string) string {
	var b strings.Builder
	r := []rune(name)
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 {
			prev := r[i-1]
			next := i+1 < len(r) && unicode.IsLower(r[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || unicode.IsUpper(prev) && next {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// problems collects what is wrong, and the keys whose value was refused.
// A refused value is left out, so the value of the layer below stands in
// and every other problem can still be found in the same run; what Validate
// says about a key at or under a refused one is then not news, and is
// dropped (see Source.Load).
type problems struct {
	fielderr.List
	refused []string
}

// reject records a problem with key and refuses its value.
func (p *problems) reject(key, format string, args ...any) {
	p.Addf(key, format, args...)
	p.refuse(key)
}

func (p *problems) refuse(key string) { p.refused = append(p.refused, key) }

// wasRefused reports whether key is at or under a refused key.
func (p *problems) wasRefused(key string) bool {
	for _, r := range p.refused {
		if key == r || strings.HasPrefix(key, r+".") || strings.HasPrefix(key, r+"[") {
			return true
		}
	}
	return false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode walks raw (as the YAML parser produced it) against n and returns
// the same tree with every value decoded into the Go type of its field:
// maps keyed by string, names and header names checked, durations as
// time.Duration, jitter as backoff.Jitter, no value converted from another
// kind. It is the one strict decode of a source: what is wrong is recorded
// in p, keyed by path, and left out of the result, so the value of the
// layer below stands in. ok is false when raw itself was left out.
func decode(raw any, n *node, path string, p *problems) (clean any, ok bool) {
	switch n.kind {
	case kindStruct:
		m, ok := asMap(raw, n, path, p)
		if !ok {
			return nil, false
		}
		out := make(map[string]any, len(m))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			child := n.field(k)
			if child == nil {
				p.Addf(join(path, k), "unknown key%s", suggest(k, n))
				continue
			}
			if v, ok := decode(m[k], child, join(path, k), p); ok {
				out[k] = v
			}
		}
		return out, true
	case kindNamed:
		m, ok := asMap(raw, n, path, p)
		if !ok {
			return nil, false
		}
		out := make(map[string]any, len(m))
		for _, name := range slices.Sorted(maps.Keys(m)) {
			key := join(path, name)
			if msg := checkName(name); msg != "" {
				p.reject(key, "%s", msg)
				continue
			}
			if v, ok := decode(m[name], n.elem, key, p); ok {
				out[name] = v
			}
		}
		return out, true
	case kindStringMap:
		m, ok := asMap(raw, n, path, p)
		if !ok {
			return nil, false
		}
		out := make(map[string]any, len(m))
		seen := make(map[string]string, len(m))
		for _, name := range slices.Sorted(maps.Keys(m)) {
			key := join(path, name)
			lower := strings.ToLower(name)
			switch {
			case !isToken(name):
				p.reject(key, "a header name is an HTTP token (letters, digits and !#$%%&'*+-^_`|~)")
			case strings.Contains(name, "."):
				p.reject(key, "a header name with \".\" cannot be configured (the key path uses \".\")")
			case seen[lower] != "":
				p.reject(key, "header %q is given twice (header names ignore case)", seen[lower])
			default:
				s, isStr := m[name].(string)
				if !isStr {
					// Never echo the value: header values hold secrets.
					p.reject(key, "must be a string, got %s (quote it)", describe(m[name]))
					continue
				}
				seen[lower] = name
				out[lower] = s
			}
		}
		return out, true
	case kindList:
		if raw == nil {
			return []any{}, true
		}
		items, isList := raw.([]any)
		if !isList {
			p.reject(path, "must be a list of entries, got %s", describe(raw))
			return nil, false
		}
		out := make([]any, len(items))
		for i, item := range items {
			key := fmt.Sprintf("%s[%d]", path, i)
			v, ok := decode(item, n.elem, key, p)
			if !ok {
				// Keep the position, so later entries keep their index.
				v = map[string]any{}
			}
			out[i] = v
		}
		return out, true
	case kindStringList, kindDurationList:
		if raw == nil {
			return []any{}, true
		}
		items, isList := raw.([]any)
		if !isList {
			p.reject(path, "must be a list, like [a, b], got %s", describe(raw))
			return nil, false
		}
		out := make([]any, len(items))
		good := true
		for i, item := range items {
			key := fmt.Sprintf("%s[%d]", path, i)
			leaf := kindString
			if n.kind == kindDurationList {
				leaf = kindDuration
			}
			v, msg := decodeScalar(item, leaf)
			if msg != "" {
				p.Addf(key, "%s", msg)
				good = false
				continue
			}
			out[i] = v
		}
		if !good {
			p.refuse(path)
			return nil, false
		}
		return out, true
	default:
		v, msg := decodeScalar(raw, n.kind)
		if msg != "" {
			p.reject(path, "%s", msg)
			return nil, false
		}
		return v, true
	}
}

// asMap accepts a map (or nothing: an empty section) with string keys.
func asMap(raw any, n *node, path string, p *problems) (map[string]any, bool) {
	switch m := raw.(type) {
	case nil:
		return map[string]any{}, true
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[fmt.Sprint(k)] = v
		}
		return out, true
	}
	what := "a map of keys"
	switch n.kind {
	case kindNamed:
		what = "a map of named entries"
	case kindStringMap:
		what = "a map of names to values"
	}
	if path == "" {
		p.reject(path, "the configuration must be %s, got %s", what, describe(raw))
	} else {
		p.reject(path, "must be %s, got %s", what, describe(raw))
	}
	return nil, false
}

// decodeScalar returns v as the Go type of kind k, or what is wrong.
// Messages never echo a string the user wrote for a string key: such
// strings include passwords and header values.
func decodeScalar(v any, k kind) (any, string) {
	if v == nil {
		return nil, "has no value (write \"\" for an empty string)"
	}
	switch k {
	case kindString:
		if s, ok := v.(string); ok {
			return s, ""
		}
		return nil, "must be a string, got " + describe(v)
	case kindBool:
		if b, ok := v.(bool); ok {
			return b, ""
		}
		return nil, "must be true or false, got " + show(v)
	case kindInt:
		switch i := v.(type) {
		case int:
			return i, ""
		case int64:
			return int(i), ""
		case uint64:
			if i > math.MaxInt64 {
				return nil, "is too large: " + show(v)
			}
			return int(i), ""
		}
		return nil, "must be a whole number, got " + show(v)
	case kindFloat:
		switch f := v.(type) {
		case float64:
			return f, ""
		case int:
			return float64(f), ""
		case int64:
			return float64(f), ""
		case uint64:
			return float64(f), ""
		}
		return nil, "must be a number, got " + show(v)
	case kindDuration:
		switch d := v.(type) {
		case string:
			return parseDuration(d)
		case int, int64, uint64, float64:
			return nil, "a duration needs a unit, like \"30s\"; got " + show(v)
		}
		return nil, "must be a duration with a unit, like \"30s\", got " + describe(v)
	case kindJitter:
		s, ok := v.(string)
		if !ok {
			return nil, "must be a jitter name (full, equal, decorrelated or none), got " + show(v)
		}
		j, err := backoff.ParseJitter(s)
		if err != nil {
			return nil, err.Error()
		}
		return j, ""
	}
	return nil, "unsupported value"
}

// parseDuration reads a duration that carries a unit, as a time.Duration.
// Go's parser takes a bare "0" too; the file does not, so that "0" and
// "30" read alike.
func parseDuration(s string) (any, string) {
	t := strings.TrimSpace(s)
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return nil, "a duration needs a unit, like \"30s\"; got " + t
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return nil, fmt.Sprintf("not a duration: %q (a number with a unit: ms, s, m or h, like \"500ms\" or \"1m30s\")", clip(s))
	}
	return d, ""
}

// describe names the YAML type of v, without its value.
func describe(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case string:
		return "a string"
	case bool:
		return "true/false"
	case int, int64, uint64, float64:
		return "a number"
	case map[string]any, map[any]any:
		return "a map"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("a %T", v)
}

// show renders a non-secret value for a message.
func show(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(clip(x))
	case int, int64, uint64, bool:
		return fmt.Sprint(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return describe(v)
}

// clip keeps messages one short line whatever the input.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// checkName returns what is wrong with the name of a breaker, bulkhead,
// backoff policy or target, or "". Names end up in routing keys, metric
// labels and environment variable names, hence the narrow alphabet.
func checkName(name string) string {
	const msg = "a name is lower-case letters, digits, \"_\" and \"-\", starting with a letter or digit"
	if name == "" || len(name) > 64 {
		return "a name has 1 to 64 characters"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return msg
		}
	}
	return ""
}

// suggest offers the known key nearest to a misspelt one.
func suggest(k string, n *node) string {
	keys := make([]string, len(n.fields))
	for i, f := range n.fields {
		keys[i] = f.key
	}
	if best := nearest(strings.ToLower(k), keys, 2); best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// nearest returns the candidate closest to s, if it is at most maxD edits
// away; the first of equals wins.
func nearest(s string, candidates []string, maxD int) string {
	best, bestD := "", maxD+1
	for _, c := range candidates {
		if d := distance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance, for short keys.
func distance(a, b string) int {
	if len(a) > 128 || len(b) > 128 {
		return 128
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
