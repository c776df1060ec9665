// Renders each case of a JSON array read on stdin with Go's own text/template, so that
// tests/unit/test_gotemplate.py can compare schemas/gotemplate.py with the real thing, and
// bench/gotemplate.py can time it (a case with "repeat": N renders N times, reports ns per render).
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
	"time"
)

type testCase struct {
	Source string         `json:"source"`
	Data   map[string]any `json:"data"`
	Repeat int            `json:"repeat"`
}

type result struct {
	Output   string  `json:"output"`
	ParseErr string  `json:"parse_error,omitempty"`
	ExecErr  string  `json:"exec_error,omitempty"`
	NsPerOp  float64 `json:"ns_per_op,omitempty"`
}

func main() {
	var cases []testCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	funcs := template.FuncMap{"toUpper": strings.ToUpper, "join": func(sep string, s []any) string {
		parts := make([]string, len(s))
		for i, v := range s {
			parts[i] = v.(string)
		}
		return strings.Join(parts, sep)
	}}
	results := make([]result, len(cases))
	for i, c := range cases {
		tmpl, err := template.New("t").Funcs(funcs).Parse(c.Source)
		if err != nil {
			results[i].ParseErr = err.Error()
			continue
		}
		var out strings.Builder
		if err := tmpl.Execute(&out, c.Data); err != nil {
			results[i].ExecErr = err.Error()
		}
		results[i].Output = out.String()
		if c.Repeat > 0 {
			start := time.Now()
			for n := 0; n < c.Repeat; n++ {
				var again strings.Builder
				_ = tmpl.Execute(&again, c.Data)
			}
			results[i].NsPerOp = float64(time.Since(start).Nanoseconds()) / float64(c.Repeat)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		panic(err)
	}
}
