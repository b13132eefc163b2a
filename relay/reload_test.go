package relay

import (
	"slices"
	"testing"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/config"
)

func TestRestartOnly(t *testing.T) {
	base := func() *config.Config {
		c := &config.Config{Breakers: map[string]breaker.Settings{
			"api": {FailureThreshold: 5},
			"llm": {FailureThreshold: 3, Share: true},
		}}
		c.AMQP.URL = "amqp://a"
		c.HTTP.Listen = ":8080"
		c.Instance = "edge-1"
		return c
	}
	cases := []struct {
		name   string
		change func(c *config.Config)
		want   []string
	}{
		{"nothing", func(*config.Config) {}, nil},
		{"a breaker's threshold: applied in place", func(c *config.Config) { c.Breakers["api"] = breaker.Settings{FailureThreshold: 9} }, nil},
		{"amqp url", func(c *config.Config) { c.AMQP.URL = "amqp://b" }, []string{"amqp"}},
		{"http listen", func(c *config.Config) { c.HTTP.Listen = ":9090" }, []string{"http.listen"}},
		{"instance", func(c *config.Config) { c.Instance = "edge-2" }, []string{"instance"}},
		{"share turned on", func(c *config.Config) { c.Breakers["api"] = breaker.Settings{FailureThreshold: 5, Share: true} }, nil}, // applied by the reload (reshare)
		{"share turned off", func(c *config.Config) { c.Breakers["llm"] = breaker.Settings{FailureThreshold: 3} }, nil},
		{"shared breaker added", func(c *config.Config) { c.Breakers["db"] = breaker.Settings{Share: true} }, nil},
		{"unshared breaker added", func(c *config.Config) { c.Breakers["db"] = breaker.Settings{} }, nil},
		{"shared breaker removed", func(c *config.Config) { delete(c.Breakers, "llm") }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.change(cfg)
			if got := restartOnly(base(), cfg); !slices.Equal(got, tc.want) {
				t.Errorf("restartOnly = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSharedBreakersAreSortedAndOnlyThoseMarked(t *testing.T) {
	cfg := &config.Config{Breakers: map[string]breaker.Settings{
		"zeta": {Share: true}, "api": {}, "alpha": {Share: true},
	}}
	if got, want := sharedBreakers(cfg), []string{"alpha", "zeta"}; !slices.Equal(got, want) {
		t.Errorf("sharedBreakers = %q, want %q", got, want)
	}
	if got := sharedBreakers(&config.Config{}); got != nil {
		t.Errorf("sharedBreakers of none = %q, want none", got)
	}
}
