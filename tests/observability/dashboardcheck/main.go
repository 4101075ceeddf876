// Command dashboardcheck checks Grafana dashboards with the upstream libraries.
//
//	dashboardcheck schema DASHBOARD.json...
//
// validates each file against Grafana's dashboard schema as published in the
// Grafana Foundation SDK (types generated from Grafana's own schema): strict
// decoding (required fields present, types right, no unknown fields in the
// dashboard, its panels, the built-in panel plugins' options and field
// config, and Prometheus queries), then the schema's constraints. It prints
// one line per file and exits 1 if any file is invalid.
//
//	dashboardcheck promql < expressions.jsonl
//
// parses PromQL expressions (one JSON string per line, Grafana variables
// already substituted) with Prometheus' own parser and prints, per line, a
// JSON object with the metric names the expression selects, or the parse
// error.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

func checkDashboard(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	board := &dashboard.Dashboard{}
	if err := orNil(board.UnmarshalJSONStrict(raw)); err != nil {
		return err
	}
	return orNil(board.Validate())
}

// orNil turns an empty error list into no error: the SDK returns its
// (typed, nil) list of errors even when it found none.
func orNil(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}

func schema(paths []string) int {
	// Panel options, field config and queries decode through the plugins' types.
	plugins.RegisterDefaultPlugins()
	status := 0
	for _, path := range paths {
		if err := checkDashboard(path); err != nil {
			status = 1
			fmt.Printf("INVALID %s:\n  %s\n", path, strings.ReplaceAll(err.Error(), "\n", "\n  "))
			continue
		}
		fmt.Printf("ok %s\n", path)
	}
	return status
}

type parsed struct {
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
	Error   string   `json:"error,omitempty"`
}

// metricNames returns the names every vector selector of expr asks for.
func metricNames(expr parser.Expr) []string {
	seen := map[string]bool{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		selector, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if selector.Name != "" {
			seen[selector.Name] = true
			return nil
		}
		for _, matcher := range selector.LabelMatchers {
			if matcher.Name == labels.MetricName {
				seen[matcher.Value] = true
			}
		}
		return nil
	})
	names := make([]string, 0, len(seen))
	for name := range seen {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func promql() int {
	promParser := parser.NewParser(parser.Options{})
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for scanner.Scan() {
		var text string
		if err := json.Unmarshal(scanner.Bytes(), &text); err != nil {
			fmt.Fprintf(os.Stderr, "not a JSON string: %v\n", err)
			return 2
		}
		result := parsed{Expr: text, Metrics: []string{}}
		if expr, err := promParser.ParseExpr(text); err != nil {
			result.Error = err.Error()
		} else {
			result.Metrics = metricNames(expr)
		}
		if err := out.Encode(result); err != nil {
			return 2
		}
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

func main() {
	if len(os.Args) >= 3 && os.Args[1] == "schema" {
		os.Exit(schema(os.Args[2:]))
	}
	if len(os.Args) == 2 && os.Args[1] == "promql" {
		os.Exit(promql())
	}
	fmt.Fprintln(os.Stderr, "usage: dashboardcheck schema DASHBOARD.json... | dashboardcheck promql < expressions.jsonl")
	os.Exit(2)
}
