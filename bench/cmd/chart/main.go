// Command chart draws the results of the bench module as bar charts, one
// bar per strategy and group, on log scales: for the hot key (one bar per
// critical-section length) acquisitions per second, Redis commands and
// Redis CPU per acquisition; for many keys (one bar for one server, one
// for the cluster) acquisitions per second and Redis CPU per acquisition.
//
//	go -C bench test -run '^$' -bench . -benchtime 3s | tee results.txt
//	go -C bench run ./cmd/chart -in results.txt -out ../docs/bench.svg
//
// The output format follows the -out extension: .svg or .png. With
// -targets it also prints the targets of issues 13 and 14 (pub/sub and
// hybrid against the best peer and the notice yardstick, ...), each met
// or missed and by how much; with -table, every row as a Markdown table.
// Both need -in.
package main

import (
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

func main() {
	in := flag.String("in", "", "go test -bench output to read (default stdin)")
	out := flag.String("out", "bench.svg", "image to write: .svg or .png")
	targets := flag.Bool("targets", false, "also print the targets of the comparison, met or missed, to stdout")
	table := flag.Bool("table", false, "also print every row as a Markdown table to stdout")
	flag.Parse()
	if *targets || *table {
		if err := printText(*in, *table, *targets); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func printText(in string, table, targets bool) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, _, err := parse(f)
	if err != nil {
		return err
	}
	if table {
		printTable(os.Stdout, rows)
		fmt.Println()
	}
	if targets {
		printChecks(os.Stdout, checks(rows))
	}
	return nil
}

// A panel is one chart: unit per strategy and group, for the rows that
// group picks.
type panel struct {
	title string
	unit  string
	group func(path []string) (group, strategy string, ok bool)
	// redisOnly leaves out the rows that sent no Redis command (local):
	// the server's idle CPU during them is not theirs.
	redisOnly bool
}

// hotKey picks HotKey/<section>/<strategy>, grouped by section.
func hotKey(path []string) (string, string, bool) {
	if len(path) != 3 || path[0] != "HotKey" {
		return "", "", false
	}
	return path[1], path[2], true
}

// manyKeys picks ManyKeys/<strategy> and ManyKeysCluster/<strategy>,
// grouped by server.
func manyKeys(path []string) (string, string, bool) {
	if len(path) != 2 {
		return "", "", false
	}
	switch path[0] {
	case "ManyKeys":
		return "one server", path[1], true
	case "ManyKeysCluster":
		return "Redis Cluster", path[1], true
	}
	return "", "", false
}

var panels = []panel{
	{"HotKey: acquisitions/s (higher is better)", "acq/s", hotKey, false},
	{"HotKey: Redis commands per acquisition (lower is better)", "redis-cmds/op", hotKey, false},
	{"HotKey: Redis CPU µs per acquisition (lower is better)", "redis-cpu-us/op", hotKey, true},
	{"ManyKeys (10,000 keys): acquisitions/s (higher is better)", "acq/s", manyKeys, false},
	{"ManyKeys (10,000 keys): Redis CPU µs per acquisition (lower is better)", "redis-cpu-us/op", manyKeys, true},
}

func run(in, out string) error {
	var r io.Reader = os.Stdin
	if in != "" {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	rows, cpu, err := parse(r)
	if err != nil {
		return err
	}
	var plots [][]*plot.Plot
	for _, pn := range panels {
		s := collect(rows, pn.unit, pn.group, pn.redisOnly)
		if len(s.strategies) == 0 {
			continue // a run without these rows (a -bench filter)
		}
		title := pn.title
		if len(plots) == 0 && cpu != "" {
			title += " — " + cpu
		}
		p, err := barPlot(s, title, pn.unit)
		if err != nil {
			return err
		}
		plots = append(plots, []*plot.Plot{p})
	}
	if len(plots) == 0 {
		return fmt.Errorf("chart: no HotKey or ManyKeys rows in the input")
	}
	return save(out, plots)
}

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
}

// barPlot draws s as grouped bars on a log scale. Bars rise from a floor
// below the smallest value, since a log axis has no zero; a zero value
// (local.Mutex sends no command) is drawn as no bar, labelled "0".
func barPlot(s series, title, unit string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = unit + " (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	// Top left, icons first: the legend's text then runs into the empty
	// top decade (the Y axis ends a decade above the highest bar) and
	// never past the right edge, whatever font the viewer substitutes.
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(8)
	p.Legend.YOffs = -vg.Points(4)
	p.Legend.ThumbnailWidth = vg.Points(14)
	p.Legend.TextStyle.Font.Size = vg.Points(10)
	p.Add(plotter.NewGrid()) // first, so the bars are drawn over it

	lo, hi := math.Inf(1), 0.0
	for _, g := range s.groups {
		for _, v := range s.values[g] {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if hi == 0 {
		lo, hi = 1, 10
	}
	floor := math.Pow(10, math.Floor(math.Log10(lo)))
	w := vg.Points(18)
	for gi, g := range s.groups {
		vals := make(plotter.Values, len(s.strategies))
		base := make(plotter.Values, len(s.strategies))
		var xys plotter.XYs
		var labels []string
		for i, st := range s.strategies {
			v, ok := s.values[g][st]
			base[i] = floor
			if ok && v > floor {
				vals[i] = v - floor
			}
			if ok {
				xys = append(xys, plotter.XY{X: float64(i), Y: math.Max(v, floor)})
				labels = append(labels, short(v))
			}
		}
		floorBars, err := plotter.NewBarChart(base, w)
		if err != nil {
			return nil, err
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		bars.StackOn(floorBars)
		bars.Color = palette[gi%len(palette)]
		bars.LineStyle.Width = 0
		off := w * vg.Length(2*gi-len(s.groups)+1) / 2
		bars.Offset = off
		p.Add(bars)
		p.Legend.Add(g, bars)
		lb, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
		if err != nil {
			return nil, err
		}
		for i := range lb.TextStyle {
			lb.TextStyle[i].Font.Size = vg.Points(7)
			lb.TextStyle[i].XAlign = draw.XCenter
		}
		lb.Offset = vg.Point{X: off, Y: vg.Points(2)}
		p.Add(lb)
	}
	p.NominalX(s.strategies...)
	p.X.Min, p.X.Max = -0.6, float64(len(s.strategies))-0.4
	p.Y.Min, p.Y.Max = floor, math.Pow(10, math.Ceil(math.Log10(hi*10)))
	return p, nil
}

// short formats v with three significant digits.
func short(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// save writes the plots, one per row, to one image.
func save(out string, plots [][]*plot.Plot) error {
	width, height := vg.Points(760), vg.Points(300*float64(len(plots)))
	var c vg.CanvasWriterTo
	switch filepath.Ext(out) {
	case ".svg":
		c = vgsvg.New(width, height)
	case ".png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(120))}
	default:
		return fmt.Errorf("chart: -out %q: want a .svg or .png file", out)
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadX: vg.Points(6), PadY: vg.Points(12)}
	canvases := plot.Align(plots, tiles, dc)
	for i, row := range plots {
		for j, p := range row {
			p.Draw(canvases[i][j])
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
