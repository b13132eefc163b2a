package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/vsm-relay/relay/configs"
	"github.com/vsm-relay/relay/internal/fielderr"
)

// EnvPrefix starts the name of every environment override:
// RELAY_AMQP_URL overrides amqp.url.
const EnvPrefix = "RELAY"

// Load reads the configuration file at path, or the default configuration
// embedded in the binary when path is "", applies the RELAY_* environment
// overrides and validates the result. On failure the error holds every
// problem found, each a *fielderr.Error keyed by its path (see
// fielderr.Lines). Load sets Instance to "<hostname>-<pid>" when the
// configuration leaves it empty.
func Load(path string) (*Config, error) {
	data := configs.Default
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading configuration: %w", err)
		}
		data = b
	}
	c, err := LoadBytes(data, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if c.Instance == "" {
		c.Instance = defaultInstance()
	}
	return c, nil
}

// LoadBytes is Load of the YAML in data, with environment variables looked
// up through env (os.LookupEnv in Load; nil: no overrides). It leaves an
// empty Instance empty.
//
// The default configuration is the base; data is read on top of it (see
// the "How your file combines with this one" notes in configs/relay.yaml),
// then the overrides, then the result is validated. Every problem is
// reported in one error, sorted by key. LoadBytes keeps no state between
// calls and is safe to call from several goroutines.
func LoadBytes(data []byte, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	sch := schema()
	var p problems

	userRaw, err := parseYAML(data)
	if err != nil {
		return nil, err
	}
	user := asTree(check(userRaw, sch, "", &p))

	base, err := builtIn(sch)
	if err != nil {
		return nil, err
	}
	dropReplaced(base, user)

	v := viper.New()
	for path, val := range leaves(base, "") {
		v.SetDefault(path, val)
	}
	if err := v.MergeConfigMap(user); err != nil {
		return nil, fmt.Errorf("merging configuration: %w", err)
	}
	trees := []any{base, user}
	applyEnv(v, sch, trees, env, &p)

	tree := asTree(assemble(v, sch, trees, ""))
	inherit(tree, "breakers", &p)
	inherit(tree, "backoff", &p)
	for _, section := range []string{"targets", "work", "outbound"} {
		fill(tree[section], entryTemplate(section))
	}

	var f fileConfig
	if err := decode(tree, &f); err != nil {
		for _, e := range decodeProblems(err) {
			if !p.covered(e.Key) {
				p.reject(e.Key, "%s", e.Msg)
			}
		}
	}
	p.checkDefaults(&f)

	var conv fielderr.List
	c := f.config(&conv)
	p.mergeUncovered("", conv.Err())
	c.resolve()
	p.mergeUncovered("", c.Validate())
	if err := p.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// parseYAML reads one YAML document; its errors carry no key but say what
// the YAML parser found and where.
func parseYAML(data []byte) (any, error) {
	var raw any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msg = strings.Join(te.Errors, "; ")
		}
		return nil, &fielderr.Error{Msg: "invalid YAML: " + strings.Join(strings.Fields(msg), " ")}
	}
	return raw, nil
}

func asTree(v any, _ bool) map[string]any {
	if m, ok := v.(map[string]any); ok {
		return m
	}
	return map[string]any{}
}

// builtIn returns the default configuration as a checked tree.
func builtIn(sch *node) (map[string]any, error) {
	raw, err := parseYAML(configs.Default)
	if err != nil {
		return nil, fmt.Errorf("built-in configuration: %w", err)
	}
	var p problems
	tree := asTree(check(raw, sch, "", &p))
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("built-in configuration: %w", err)
	}
	return tree, nil
}

// dropReplaced removes from base the entries a user's section replaces.
func dropReplaced(base, user map[string]any) {
	for _, section := range []string{"targets", "bulkheads", "work", "outbound"} {
		if _, ok := user[section]; ok {
			delete(base, section)
		}
	}
	for _, section := range []string{"breakers", "backoff"} {
		um, _ := user[section].(map[string]any)
		named := false
		for name := range um {
			named = named || name != defaultsEntry
		}
		if !named {
			continue
		}
		bm, _ := base[section].(map[string]any)
		for name := range bm {
			if name != defaultsEntry {
				delete(bm, name)
			}
		}
	}
}

// leaves yields every value of tree by its key path. Lists are values; an
// empty map has none (the entry itself is known from the trees, see
// assemble).
func leaves(tree map[string]any, prefix string) map[string]any {
	out := make(map[string]any)
	var walk func(m map[string]any, prefix string)
	walk = func(m map[string]any, prefix string) {
		for k, v := range m {
			path := join(prefix, k)
			if sub, ok := v.(map[string]any); ok {
				walk(sub, path)
				continue
			}
			out[path] = v
		}
	}
	walk(tree, prefix)
	return out
}

// sub returns the value under key of every tree that has one.
func sub(trees []any, key string) []any {
	var out []any
	for _, t := range trees {
		if m, ok := t.(map[string]any); ok {
			if v, ok := m[key]; ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// names returns the keys of every map among trees, sorted.
func names(trees []any) []string {
	set := make(map[string]bool)
	for _, t := range trees {
		if m, ok := t.(map[string]any); ok {
			for k := range m {
				set[k] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// walk calls visit for every key a value can be set for: the leaves, each
// header, and each list (as a whole). trees tell which named entries and
// headers exist.
func walk(n *node, trees []any, path string, visit func(path string, n *node)) {
	switch n.kind {
	case kindStruct:
		for _, f := range n.fields {
			walk(f.node, sub(trees, f.key), join(path, f.key), visit)
		}
	case kindNamed:
		for _, name := range names(trees) {
			walk(n.elem, sub(trees, name), join(path, name), visit)
		}
	case kindStringMap:
		for _, name := range names(trees) {
			visit(join(path, name), &node{kind: kindString})
		}
	default:
		visit(path, n)
	}
}

// assemble reads the layered values out of v into one tree shaped by the
// schema. viper forgets maps without values (a breaker written `amqp: {}`
// would vanish) and does not merge maps across layers, so the tree is built
// key by key from the names the trees hold.
func assemble(v *viper.Viper, n *node, trees []any, path string) (any, bool) {
	switch n.kind {
	case kindStruct:
		m := make(map[string]any, len(n.fields))
		for _, f := range n.fields {
			if val, ok := assemble(v, f.node, sub(trees, f.key), join(path, f.key)); ok {
				m[f.key] = val
			}
		}
		return m, true
	case kindNamed:
		m := make(map[string]any)
		for _, name := range names(trees) {
			m[name], _ = assemble(v, n.elem, sub(trees, name), join(path, name))
		}
		return m, true
	case kindStringMap:
		m := make(map[string]any)
		for _, name := range names(trees) {
			if key := join(path, name); v.IsSet(key) {
				m[name] = v.Get(key)
			}
		}
		return m, true
	}
	if !v.IsSet(path) {
		return nil, false
	}
	val := v.Get(path)
	if items, ok := val.([]any); ok {
		// Copy, so that filling in entries leaves viper's layers alone.
		cp := make([]any, len(items))
		for i, item := range items {
			if m, ok := item.(map[string]any); ok {
				item = maps.Clone(m)
			}
			cp[i] = item
		}
		val = cp
	}
	return val, true
}

// inherit fills every named entry of section with the keys of its
// `defaults` entry that it leaves out.
func inherit(tree map[string]any, section string, p *problems) {
	m, _ := tree[section].(map[string]any)
	defaults, _ := m[defaultsEntry].(map[string]any)
	for name, e := range m {
		entry, ok := e.(map[string]any)
		if name == defaultsEntry || !ok {
			continue
		}
		for k, val := range defaults {
			if _, set := entry[k]; !set {
				entry[k] = val
				p.cover(section + "." + name + "." + k)
			}
		}
	}
}

// fill gives every entry of a named section or list the template's keys it
// leaves out.
func fill(section any, template map[string]any) {
	var entries []any
	switch s := section.(type) {
	case map[string]any:
		for _, e := range s {
			entries = append(entries, e)
		}
	case []any:
		entries = s
	}
	for _, e := range entries {
		entry, ok := e.(map[string]any)
		if !ok {
			continue
		}
		for k, val := range template {
			if _, set := entry[k]; !set {
				entry[k] = val
			}
		}
	}
}

// checkDefaults validates the `defaults` entries of breakers and backoff
// (they are no breaker or policy themselves, so Validate never sees them)
// and takes them out of f.
func (p *problems) checkDefaults(f *fileConfig) {
	if d, ok := f.Breakers[defaultsEntry]; ok {
		p.mergeUncovered("breakers."+defaultsEntry, d.settings().Validate())
		delete(f.Breakers, defaultsEntry)
	}
	if d, ok := f.Backoff[defaultsEntry]; ok {
		pol, err := d.policy()
		if err != nil {
			p.mergeUncovered("backoff."+defaultsEntry+".jitter", err)
		}
		p.mergeUncovered("backoff."+defaultsEntry, pol.Validate())
		delete(f.Backoff, defaultsEntry)
	}
}

// resolve fills the values whose default depends on other sections. An
// invalid source is left alone: Validate reports it once, at its own key.
func (c *Config) resolve() {
	for name, t := range c.Targets {
		b, ok := c.Bulkheads[t.Bulkhead]
		if ok && t.Concurrency == 0 && b.Validate() == nil {
			t.Concurrency = b.Size + b.Overflow
			c.Targets[name] = t
		}
	}
	if c.AMQP.Prefetch < 1 || c.AMQP.Prefetch > maxPrefetch {
		return
	}
	for i := range c.Work {
		if c.Work[i].Prefetch == 0 {
			c.Work[i].Prefetch = c.AMQP.Prefetch
		}
	}
	for i := range c.Outbound {
		if c.Outbound[i].Prefetch == 0 {
			c.Outbound[i].Prefetch = c.AMQP.Prefetch
		}
	}
}

// decode is strict: no weak typing (a string never becomes a number), no
// unused keys, and durations only from strings with a unit.
func decode(tree map[string]any, f *fileConfig) error {
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:  durationHook,
		ErrorUnused: true,
		Result:      f,
	})
	if err != nil {
		return err
	}
	return d.Decode(tree)
}

// durationHook keeps mapstructure from reading a number as nanoseconds.
func durationHook(_ reflect.Type, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeFor[duration]() {
		return data, nil
	}
	switch x := data.(type) {
	case string:
		d, msg := parseDuration(x)
		if msg != "" {
			return nil, errors.New(msg)
		}
		return duration(d), nil
	case duration:
		return x, nil
	case int, int64, uint64, float64:
		return nil, errors.New("a duration needs a unit, like \"30s\"; got " + show(x))
	}
	return nil, errors.New("must be a duration with a unit, like \"30s\", got " + describe(data))
}

// decodeProblems keys mapstructure's errors by the file's key paths:
// "breakers[llm_api].timeout" becomes "breakers.llm_api.timeout", list
// positions stay "work[0].queue".
func decodeProblems(err error) []*fielderr.Error {
	var out []*fielderr.Error
	var visit func(error)
	visit = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				visit(inner)
			}
			return
		}
		if de, ok := e.(*mapstructure.DecodeError); ok {
			inner := de.Unwrap()
			var nested *mapstructure.DecodeError
			if _, joined := inner.(interface{ Unwrap() []error }); joined || errors.As(inner, &nested) {
				visit(inner)
				return
			}
			out = append(out, &fielderr.Error{Key: mapstructureKey(de.Name()), Msg: inner.Error()})
			return
		}
		// Decode wraps what it found in one summary error.
		var de *mapstructure.DecodeError
		if inner := errors.Unwrap(e); inner != nil && errors.As(inner, &de) {
			visit(inner)
			return
		}
		out = append(out, &fielderr.Error{Msg: e.Error()})
	}
	visit(err)
	return out
}

func mapstructureKey(name string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(name, '[')
		if i < 0 {
			break
		}
		j := strings.IndexByte(name[i:], ']')
		if j < 0 {
			break
		}
		b.WriteString(name[:i])
		inner := name[i+1 : i+j]
		if _, err := strconv.Atoi(inner); err == nil {
			b.WriteString("[" + inner + "]")
		} else {
			b.WriteString("." + inner)
		}
		name = name[i+j+1:]
	}
	b.WriteString(name)
	return b.String()
}

// defaultInstance is "<hostname>-<pid>", made a valid routing-key word.
func defaultInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "relay"
	}
	host = strings.Map(func(r rune) rune {
		if r == '.' || r == '#' || r == '*' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return '-'
		}
		return r
	}, host)
	if len(host) > 100 {
		host = host[:100]
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}
