package main

import (
	"os"
	"testing"

	"github.com/transition-matrix/transition-matrix/config"
)

// TestExampleConfigParses keeps config.example.yaml in step with the configuration's keys.
func TestExampleConfigParses(t *testing.T) {
	data, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(data, ".", func(string) string { return "" })
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	if c.ServerName != "example.org" || c.Synapse.URL == "" || len(c.AllowCIDRs) != 2 || c.Metrics.Listen == "" || c.Target.URL == "" || c.Target.TokenFile == "" {
		t.Fatalf("parsed %+v", c)
	}
}
