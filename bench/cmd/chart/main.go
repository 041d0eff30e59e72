// Command chart redraws the comparison of the bench module from a saved
// output: the figure, the table a person reads, and the targets, met or
// missed. The comparison run prints all three itself at its end; this
// command is for an output saved earlier:
//
//	go -C bench test -run '^$' -bench . -benchtime 3s | tee bench/results.txt
//	go -C bench run ./cmd/chart -in results.txt -targets
//
// With -out it writes the figure (.png or .svg); with -text, the table a
// person reads; with -table, every row as a Markdown table (the README's
// full results); with -targets, the targets. Without any of them it
// prints the table and the targets.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/keyedmutex/keyedmutex/bench/report"
)

func main() {
	in := flag.String("in", "", "saved `go test -bench` output to read (default stdin)")
	out := flag.String("out", "", "write the figure to this .png or .svg file")
	text := flag.Bool("text", false, "print the table a person reads")
	table := flag.Bool("table", false, "print every row as a Markdown table")
	targets := flag.Bool("targets", false, "print the targets, met or missed")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "chart: unexpected arguments %q (the input is -in FILE or stdin)\n", flag.Args())
		os.Exit(2)
	}
	if err := run(*in, *out, *text, *table, *targets, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(in, out string, text, table, targets bool, stdin io.Reader, stdout io.Writer) error {
	r := stdin
	if in != "" {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	rows, meta, err := report.Parse(r)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return fmt.Errorf("chart: no benchmark result line in the input")
	}
	if out == "" && !text && !table && !targets {
		text, targets = true, true
	}
	if text {
		report.PrintText(stdout, meta, rows)
		fmt.Fprintln(stdout)
	}
	if table {
		report.PrintMarkdown(stdout, rows)
		fmt.Fprintln(stdout)
	}
	if targets {
		report.PrintChecks(stdout, report.Checks(rows))
	}
	if out != "" {
		if err := report.WriteChart(out, meta, rows); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "chart: wrote %s\n", out)
	}
	return nil
}
