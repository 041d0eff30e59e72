package report

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// A Panel is one chart of the figure: one bar per strategy of the rows
// under Scenario, showing Unit.
type Panel struct {
	Title    string
	Scenario []string // the rows' path but the strategy: {"HotKey", "empty"}
	Unit     string
	// Scale is how the Y axis is drawn: "log" (the default) or "jain", a
	// linear axis that ends at 1 and starts just below the lowest value.
	Scale string
	// RedisOnly leaves out the rows that sent no Redis command (local):
	// the server's idle CPU during them is not theirs.
	RedisOnly bool
	// Divide scales the values for display (1e6: ns to ms); 0 is 1.
	Divide float64
}

// Panels is the comparison figure, row by row, three panels a row.
var Panels = [][]Panel{
	{
		{"HotKey (1 key, 4x16 goroutines): acquisitions/s", []string{"HotKey", "empty"}, "acq/s", "log", false, 0},
		{"ManyKeys (10,000 keys): acquisitions/s", []string{"ManyKeys"}, "acq/s", "log", false, 0},
		{"ManyKeys on a 3-master Cluster: acquisitions/s", []string{"ManyKeysCluster"}, "acq/s", "log", false, 0},
	},
	{
		{"HotKey: Redis CPU µs per acquisition", []string{"HotKey", "empty"}, "redis-cpu-us/op", "log", true, 0},
		{"ManyKeys: Redis CPU µs per acquisition", []string{"ManyKeys"}, "redis-cpu-us/op", "log", true, 0},
		{"Uncontended: Redis CPU µs per Lock+Unlock", []string{"Uncontended"}, "redis-cpu-us/op", "log", true, 0},
	},
	{
		{"HotKey: p99 wait, ms", []string{"HotKey", "empty"}, "p99-wait-ns", "log", false, 1e6},
		{"ManyKeys: p99 wait, ms", []string{"ManyKeys"}, "p99-wait-ns", "log", false, 1e6},
		{"Uncontended: client CPU µs per Lock+Unlock", []string{"Uncontended"}, "client-cpu-us/op", "log", false, 0},
	},
	{
		{"HotKey: fairness (Jain's index, 1 is fair)", []string{"HotKey", "empty"}, "jain", "jain", false, 0},
		{"HotKey: Redis commands per acquisition", []string{"HotKey", "empty"}, "redis-cmds/op", "log", false, 0},
		{"Handoff: p50 from Unlock to the other's Lock, µs", []string{"Handoff"}, "p50-handoff-ns", "log", false, 1e3},
	},
}

// bar is one bar of a panel.
type bar struct {
	strategy string
	value    float64
}

// barsOf returns pn's bars from rows, in the rows' order.
func barsOf(rows []Row, pn Panel) []bar {
	var bs []bar
	for _, r := range rows {
		if len(r.Path) != len(pn.Scenario)+1 || !equal(r.Path[:len(pn.Scenario)], pn.Scenario) {
			continue
		}
		v, ok := r.Metrics[pn.Unit]
		if !ok || math.IsNaN(v) {
			continue
		}
		if cmds, ok := r.Metrics["redis-cmds/op"]; pn.RedisOnly && (!ok || cmds == 0) {
			continue
		}
		if pn.Divide != 0 {
			v /= pn.Divide
		}
		bs = append(bs, bar{r.Path[len(r.Path)-1], v})
	}
	return bs
}

// niceBelow returns the largest 1, 2 or 5 times a power of ten at or
// below v > 0; niceAbove the smallest at or above.
func niceBelow(v float64) float64 {
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{5, 2, 1} {
		if m*e <= v*(1+1e-9) {
			return m * e
		}
	}
	return e
}

func niceAbove(v float64) float64 {
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*e >= v*(1-1e-9) {
			return m * e
		}
	}
	return 10 * e
}

// axisRange returns the Y range of a panel: for "log", from a 1-2-5 step
// below the lowest positive value to one above 1.6x the highest (room
// for the bar's label), so that the axis fits the data; for "jain", a
// linear axis from below the lowest value (by half its distance to 1, so
// that its bar shows) to a little above 1.
func axisRange(bs []bar, scale string) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, b := range bs {
		if scale == "jain" || b.value > 0 {
			lo, hi = math.Min(lo, b.value), math.Max(hi, b.value)
		}
	}
	if scale == "jain" {
		if math.IsInf(lo, 1) {
			lo = 1
		}
		lo = math.Max(0, math.Min(math.Floor((lo-math.Max(0.005, (1-lo)*0.5))*200)/200, 0.99))
		return lo, 1 + (1-lo)*0.15
	}
	if math.IsInf(lo, 1) {
		return 1, 10
	}
	return niceBelow(lo / 1.5), niceAbove(hi * 1.6)
}

// logTicks marks a log axis: 1, 2 and 5 times each power of ten within
// [min, max] where the range spans at most two decades, the powers of
// ten only where it spans more, and always both ends.
func logTicks(min, max float64) []plot.Tick {
	steps := []float64{1, 2, 5}
	if max/min > 100 {
		steps = []float64{1}
	}
	ticks := []plot.Tick{{Value: min, Label: Short(min)}}
	for e := math.Pow(10, math.Floor(math.Log10(min))); e <= max; e *= 10 {
		for _, m := range steps {
			v := m * e
			if v > min*(1+1e-9) && v < max*(1-1e-9) {
				ticks = append(ticks, plot.Tick{Value: v, Label: Short(v)})
			}
		}
	}
	ticks = append(ticks, plot.Tick{Value: max, Label: Short(max)})
	// An end too close to its neighbour would print over it: keep the
	// tick, drop its label.
	near := 1.9
	if len(steps) == 1 {
		near = 3
	}
	if n := len(ticks); n > 2 {
		if ticks[1].Value/ticks[0].Value < near {
			ticks[0].Label = ""
		}
		if ticks[n-1].Value/ticks[n-2].Value < near {
			ticks[n-1].Label = ""
		}
	}
	return ticks
}

var (
	ours      = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff} // this library
	peer      = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff} // redsync, redislock, rueidislock
	yardstick = color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff} // ping, notice
)

func barColor(strategy string) color.Color {
	switch strategy {
	case "ping", "notice":
		return yardstick
	}
	for _, p := range Peers {
		if p == strategy {
			return peer
		}
	}
	return ours
}

// barPlotter draws bars from the bottom of the axis, each labelled
// with its value; a zero (local sends no command) is no bar, labelled 0.
type barPlotter struct {
	bars  []bar
	floor float64
	label text.Style
	fmt   func(float64) string
}

func (bp barPlotter) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	w := (trX(1) - trX(0)) * 0.7
	for i, b := range bp.bars {
		x := trX(float64(i))
		top := trY(math.Max(b.value, bp.floor))
		if b.value > bp.floor {
			c.FillPolygon(barColor(b.strategy), []vg.Point{
				{X: x - w/2, Y: trY(bp.floor)}, {X: x + w/2, Y: trY(bp.floor)},
				{X: x + w/2, Y: top}, {X: x - w/2, Y: top},
			})
		}
		c.FillText(bp.label, vg.Point{X: x, Y: top + vg.Points(2)}, bp.fmt(b.value))
	}
}

// panelPlot draws one panel, or returns nil where the run has no row
// for it.
func panelPlot(rows []Row, pn Panel) *plot.Plot {
	bs := barsOf(rows, pn)
	if len(bs) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = pn.Title
	p.Title.TextStyle.Font.Size = vg.Points(10)
	lo, hi := axisRange(bs, pn.Scale)
	p.Y.Min, p.Y.Max = lo, hi
	format := Short
	if pn.Scale == "jain" {
		format = f3
		p.Y.Tick.Marker = plot.DefaultTicks{}
	} else {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.TickerFunc(logTicks)
		p.Y.Label.Text = "log scale"
		p.Y.Label.TextStyle.Font.Size = vg.Points(8)
	}
	p.Y.Tick.Label.Font.Size = vg.Points(8)
	p.Add(plotter.NewGrid()) // first, so the bars are drawn over it
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.strategy
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(bs))-0.4
	p.X.Tick.Label.Font.Size = vg.Points(8)
	p.X.Tick.Label.Rotation = math.Pi / 6
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	p.X.Padding = vg.Points(4)
	label := text.Style{
		Color:   color.Black,
		Font:    font.From(plot.DefaultFont, vg.Points(7)),
		XAlign:  draw.XCenter,
		Handler: plot.DefaultTextHandler,
	}
	p.Add(barPlotter{bars: bs, floor: lo, label: label, fmt: format})
	return p
}

// WriteChart draws the comparison figure (Panels) of rows to out, a .png
// or .svg file, with meta's header above it. It fails if the run has no
// row for any panel.
func WriteChart(out string, meta Meta, rows []Row) error {
	grid := make([][]*plot.Plot, len(Panels))
	n := 0
	for i, row := range Panels {
		for _, pn := range row {
			p := panelPlot(rows, pn)
			if p != nil {
				n++
			}
			grid[i] = append(grid[i], p)
		}
	}
	if n == 0 {
		return fmt.Errorf("report: no row for any panel of the chart (HotKey/empty, ManyKeys, ManyKeysCluster, Uncontended, Handoff)")
	}
	const header = 46 // points above the panels
	width, height := vg.Points(1080), vg.Points(250*float64(len(Panels))+header)
	var c vg.CanvasWriterTo
	switch filepath.Ext(out) {
	case ".svg":
		c = vgsvg.New(width, height)
	case ".png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(96))}
	default:
		return fmt.Errorf("report: chart %q: want a .png or .svg file", out)
	}
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	title := text.Style{Color: color.Black, Font: font.From(plot.DefaultFont, vg.Points(12)), Handler: plot.DefaultTextHandler}
	small := title
	small.Font = font.From(plot.DefaultFont, vg.Points(9))
	top := dc.Max.Y - vg.Points(16)
	dc.FillText(title, vg.Point{X: vg.Points(10), Y: top}, "keyedmutex (blue) against redsync, redislock and rueidislock (orange); grey: yardsticks, not locks")
	dc.FillText(small, vg.Point{X: vg.Points(10), Y: top - vg.Points(16)}, strings.Join(meta.Header(), "   "))
	body := draw.Crop(dc, 0, 0, 0, -vg.Points(header))
	tiles := draw.Tiles{Rows: len(Panels), Cols: len(Panels[0]), PadTop: vg.Points(4), PadBottom: vg.Points(4), PadX: vg.Points(14), PadY: vg.Points(10), PadLeft: vg.Points(6), PadRight: vg.Points(10)}
	for i, row := range grid {
		for j, p := range row {
			if p != nil {
				p.Draw(tiles.At(body, j, i))
			}
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
