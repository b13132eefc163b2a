package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/vsm-relay/relay/backoff"
	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/configs"
	"github.com/vsm-relay/relay/internal/fielderr"
)

// EnvPrefix starts the name of every environment override:
// RELAY_AMQP_URL overrides amqp.url.
const EnvPrefix = "RELAY"

// Source is where the configuration comes from. Its Load reads every
// layer again, so that a running relay can reload from the same sources;
// a Source holds no state and is safe to use from several goroutines.
type Source struct {
	// Path is the YAML file read on top of the default configuration; "":
	// the default configuration embedded in the binary, alone.
	Path string
	// Environ lists the environment as "NAME=value" strings, like
	// os.Environ, which it defaults to when nil.
	Environ func() []string
}

// Load reads the configuration file at path, or the default configuration
// embedded in the binary when path is "", applies the RELAY_* environment
// overrides and validates the result. It is Source{Path: path}.Load().
func Load(path string) (*Config, error) { return Source{Path: path}.Load() }

// Load reads the default configuration, the file and the RELAY_*
// environment variables, and validates the result. On failure the error
// holds every problem found, each a *fielderr.Error keyed by its path (see
// fielderr.Lines); a RELAY_ variable that names no configuration key is
// one, keyed by the variable. Load sets Instance to "<hostname>-<pid>"
// when the configuration leaves it empty.
func (s Source) Load() (*Config, error) {
	data := configs.Default
	if s.Path != "" {
		b, err := os.ReadFile(s.Path)
		if err != nil {
			return nil, fmt.Errorf("reading configuration: %w", err)
		}
		data = b
	}
	environ := s.Environ
	if environ == nil {
		environ = os.Environ
	}
	vars := make(map[string]string)
	for _, kv := range environ() {
		if name, val, ok := strings.Cut(kv, "="); ok {
			vars[name] = val
		}
	}
	c, err := load(data, environment{
		lookup: func(name string) (string, bool) {
			v, ok := vars[name]
			return v, ok
		},
		names: slices.Sorted(maps.Keys(vars)),
	})
	if err != nil {
		return nil, err
	}
	if c.Instance == "" {
		c.setInstance(defaultInstance())
	}
	return c, nil
}

// LoadBytes is Load of the YAML in data, with environment variables looked
// up through env (nil: no overrides). Since a lookup cannot list the
// variables that are set, LoadBytes cannot report a RELAY_ variable that
// names no key; Source.Load does. It leaves an empty Instance empty.
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
	return load(data, environment{lookup: env})
}

// load decodes each source once, strictly (decode), layers them in a
// viper instance (the default file, data, the environment), builds the
// Config from the layers and validates it once.
func load(data []byte, env environment) (*Config, error) {
	sch := schema()
	var p problems

	userRaw, err := parseYAML(data)
	if err != nil {
		return nil, err
	}
	user := asTree(decode(userRaw, sch, "", &p))

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
	inherited := make(map[string]bool)
	inherit(tree, "breakers", inherited)
	inherit(tree, "backoff", inherited)
	for _, section := range []string{"targets", "work", "outbound"} {
		fill(tree[section], entryTemplate(section))
	}
	defaults := takeDefaults(tree)

	var c Config
	if err := assign(tree, &c); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	for name, t := range c.Targets {
		t.Name = name
		c.Targets[name] = t
	}
	c.resolve()

	// One validation pass: the defaults entries, which are no breaker or
	// policy themselves, then the Config. What it says about a refused
	// value, or about a value an entry inherits from a defaults entry
	// already reported, was said once already.
	var found fielderr.List
	if err := defaults.validate(&found); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	found.Merge("", c.Validate())
	reported := make(map[string]bool)
	for _, e := range fielderr.Flatten(found.Err()) {
		reported[e.Key] = true
	}
	for _, e := range fielderr.Flatten(found.Err()) {
		if p.wasRefused(e.Key) || inherited[e.Key] && reported[defaultsKey(e.Key)] {
			continue
		}
		p.Addf(e.Key, "%s", e.Msg)
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return &c, nil
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
	tree := asTree(decode(raw, sch, "", &p))
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
// `defaults` entry that it leaves out, recording each key it fills.
func inherit(tree map[string]any, section string, inherited map[string]bool) {
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
				inherited[section+"."+name+"."+k] = true
			}
		}
	}
}

// defaultsKey is the key of the defaults entry that an inherited key
// comes from: breakers.llm_api.timeout -> breakers.defaults.timeout.
func defaultsKey(key string) string {
	section, rest, _ := strings.Cut(key, ".")
	_, leaf, _ := strings.Cut(rest, ".")
	return section + "." + defaultsEntry + "." + leaf
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

// entryTemplate gives the keys an entry of section leaves out. Entries of
// the default file spell every key; these serve a user's own entries, which
// replace the default ones wholesale. Breakers and backoff policies take
// theirs from the `defaults` entry instead; bulkheads need none (their zero
// values mean the bulkhead package's defaults), nor do the keys whose zero
// value Load resolves (concurrency, retry_budget, prefetch, queue_type,
// delivery_limit).
func entryTemplate(section string) map[string]any {
	switch section {
	case "targets":
		return map[string]any{
			"method":             "POST",
			"timeout":            10 * time.Second,
			"headers":            map[string]any{},
			"max_request_bytes":  1 << 20,
			"max_response_bytes": 4 << 20,
		}
	case "work":
		return map[string]any{"redelivery": []any{}}
	case "outbound":
		return map[string]any{"url": ""}
	}
	return nil
}

// defaultsEntry is the entry of breakers and backoff that every named entry
// starts from.
const defaultsEntry = "defaults"

// defaultEntries are the `defaults` entries of breakers and backoff, taken
// out of the tree: they are no breaker or policy themselves.
type defaultEntries struct {
	breakers, backoff map[string]any
}

func takeDefaults(tree map[string]any) defaultEntries {
	take := func(section string) map[string]any {
		m, _ := tree[section].(map[string]any)
		d, _ := m[defaultsEntry].(map[string]any)
		delete(m, defaultsEntry)
		return d
	}
	return defaultEntries{breakers: take("breakers"), backoff: take("backoff")}
}

// validate adds the problems of the defaults entries to l. An error is a
// defect of the decoder, not of the configuration.
func (d defaultEntries) validate(l *fielderr.List) error {
	if d.breakers != nil {
		var s breaker.Settings
		if err := assign(d.breakers, &s); err != nil {
			return err
		}
		l.Merge("breakers."+defaultsEntry, s.Validate())
	}
	if d.backoff != nil {
		var pol backoff.Policy
		if err := assign(d.backoff, &pol); err != nil {
			return err
		}
		l.Merge("backoff."+defaultsEntry, pol.Validate())
	}
	return nil
}

// assign copies a decoded tree into out. Every value already has its
// field's type (decode saw to it), so assign only places values; the key
// of a field is keyOf's.
func assign(tree map[string]any, out any) error {
	keys := make(map[string]string) // field name -> key, as snake is asked often
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		TagName: tagName,
		MatchName: func(key, field string) bool {
			k, ok := keys[field]
			if !ok {
				k = snake(field)
				keys[field] = k
			}
			return key == k
		},
		ErrorUnused: true,
		Result:      out,
	})
	if err != nil {
		return err
	}
	return d.Decode(tree)
}

// resolve fills the values whose default depends on other sections. An
// invalid source is left alone: Validate reports it once, at its own key.
func (c *Config) resolve() {
	c.setInstance(c.Instance)
	for name, t := range c.Targets {
		b, ok := c.Bulkheads[t.Bulkhead]
		if ok && t.Concurrency == 0 && b.Validate() == nil {
			t.Concurrency = b.Size + b.Overflow
		}
		t.RetryBudget = t.RetryBudget.WithDefaults()
		c.Targets[name] = t
	}
	prefetch, queueType, limit := c.AMQP.Prefetch, c.AMQP.QueueType, c.AMQP.DeliveryLimit
	if prefetch < 1 || prefetch > maxPrefetch {
		prefetch = 0
	}
	if checkQueueType(queueType) != "" {
		queueType = ""
	}
	if limit < 1 || limit > maxDeliveryLimit {
		limit = 0
	}
	for i := range c.Work {
		w := &c.Work[i]
		w.Prefetch = cmp.Or(w.Prefetch, prefetch)
		w.QueueType = cmp.Or(w.QueueType, queueType)
		w.DeliveryLimit = cmp.Or(w.DeliveryLimit, limit)
	}
	for i := range c.Outbound {
		o := &c.Outbound[i]
		o.Prefetch = cmp.Or(o.Prefetch, prefetch)
		o.QueueType = cmp.Or(o.QueueType, queueType)
		o.DeliveryLimit = cmp.Or(o.DeliveryLimit, limit)
	}
}

// setInstance sets the relay's instance id where the components take it.
func (c *Config) setInstance(id string) {
	c.Instance, c.Algedonic.Instance, c.Health.Instance = id, id, id
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
