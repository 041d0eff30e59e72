package otelkeyedmutex_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/extra/otelkeyedmutex"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// exported is what the Observer really exports through the OpenTelemetry
// Prometheus exporter: the series names a query may name (a histogram's
// _bucket, _sum and _count), each with its family, and each family's
// labels with the values seen.
type exported struct {
	series   map[string]string                         // series name -> family name
	types    map[string]string                         // family name -> type
	families map[string]map[string]map[string]struct{} // family -> label -> values
}

// export runs an Observer on a Prometheus registry, as Example_prometheus
// does, gives it every kind of event of every backend with every outcome,
// and gathers what the registry then holds.
func export(t *testing.T) exported {
	t.Helper()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	t.Cleanup(func() { mp.Shutdown(ctx) })
	obs, err := otelkeyedmutex.NewObserver(otelkeyedmutex.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	fail := errors.New("test")
	for _, b := range []string{"local", "distributed", "hybrid"} {
		for _, op := range []string{"Lock", "TryLock", "LockN", "TryLockN"} {
			for o := mutex.Acquired; o <= mutex.LostLease; o++ {
				obs.Observe(ctx, mutex.Event{Kind: mutex.Waiting, Backend: b, Op: op})
				obs.Observe(ctx, mutex.Event{Kind: mutex.LockDone, Backend: b, Op: op, Outcome: o, Wait: time.Millisecond, Waited: true})
			}
		}
		obs.Observe(ctx, mutex.Event{Kind: mutex.Waiting, Backend: b, Op: "Lock"}) // one still waiting
		for _, o := range []mutex.Outcome{mutex.Released, mutex.LostLease, mutex.Failed} {
			obs.Observe(ctx, mutex.Event{Kind: mutex.Unlocked, Backend: b, Outcome: o, Hold: time.Millisecond})
		}
		for _, e := range []mutex.Event{
			{Kind: mutex.Lost, Err: mutex.ErrLost},
			{Kind: mutex.Renewed, Outcome: mutex.Acquired},
			{Kind: mutex.Renewed, Outcome: mutex.Failed, Err: fail},
			{Kind: mutex.LocalHandoff},
			{Kind: mutex.RemoteAcquired},
			{Kind: mutex.Granted},
			{Kind: mutex.Notice},
			{Kind: mutex.PollWake},
			{Kind: mutex.Reconnect, Err: fail},
			{Kind: mutex.Queued},
			{Kind: mutex.Late},
		} {
			e.Backend = b
			obs.Observe(ctx, e)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	x := exported{series: map[string]string{}, types: map[string]string{}, families: map[string]map[string]map[string]struct{}{}}
	for _, mf := range mfs {
		name, typ := mf.GetName(), mf.GetType().String()
		if !strings.HasPrefix(name, "keyedmutex_") {
			continue // target_info, otel_scope_info
		}
		x.types[name] = typ
		labels := map[string]map[string]struct{}{}
		x.families[name] = labels
		add := func(l, v string) {
			if labels[l] == nil {
				labels[l] = map[string]struct{}{}
			}
			labels[l][v] = struct{}{}
		}
		if typ == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				x.series[name+s] = name
			}
			add("le", "")
		} else {
			x.series[name] = name
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				add(lp.GetName(), lp.GetValue())
			}
		}
	}
	return x
}

// The labels Prometheus adds to every series of a scrape target, which a
// dashboard may select on though the module does not export them.
var targetLabels = []string{"job", "instance"}

// dashboard is the part of a Grafana dashboard JSON the test reads.
type dashboard struct {
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Title       string      `json:"title"`
	Type        string      `json:"type"`
	Description string      `json:"description"`
	Datasource  *datasource `json:"datasource"`
	Targets     []struct {
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a row's
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

var (
	quoted   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	ident    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	matcher  = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	grouping = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// checkExpr reports what in the PromQL expr is not exported: metric
// names, label names (a label must be one of a metric the expression
// names, or a target label), and the values of equality matchers (one of
// those the label has on a metric the expression names).
func (x exported) checkExpr(expr string) []string {
	var bad []string
	ids := ident.FindAllString(quoted.ReplaceAllString(expr, `""`), -1)
	var named []string // the families expr names
	for _, id := range ids {
		if f, ok := x.series[id]; ok && !slices.Contains(named, f) {
			named = append(named, f)
		}
	}
	if len(named) == 0 {
		bad = append(bad, "names no exported metric")
	}
	values := func(l string) (map[string]struct{}, bool) {
		vs, found := map[string]struct{}{}, false
		for _, f := range named {
			if lv, ok := x.families[f][l]; ok {
				found = true
				for v := range lv {
					vs[v] = struct{}{}
				}
			}
		}
		return vs, found
	}
	isLabel := func(l string) bool {
		_, ok := values(l)
		return ok || slices.Contains(targetLabels, l)
	}
	for _, id := range ids {
		if _, ok := x.series[id]; ok || !strings.HasPrefix(id, "keyedmutex") {
			continue // a metric, or functions, keywords, job, le
		}
		if !isLabel(id) {
			bad = append(bad, "unknown metric, or label of no metric named, "+id)
		}
	}
	for _, m := range matcher.FindAllStringSubmatch(expr, -1) {
		name, op, value := m[1], m[2], m[3]
		if !isLabel(name) {
			bad = append(bad, "unknown label "+name)
			continue
		}
		if op != "=" || slices.Contains(targetLabels, name) {
			continue
		}
		if vs, _ := values(name); !mapHas(vs, value) {
			bad = append(bad, "label "+name+" never has value "+value)
		}
	}
	for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
		for l := range strings.SplitSeq(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !isLabel(l) {
				bad = append(bad, "grouping by unknown label "+l)
			}
		}
	}
	return bad
}

func mapHas(m map[string]struct{}, k string) bool {
	_, ok := m[k]
	return ok
}

// TestDashboard checks dashboards/keyedmutex.json against a real export:
// every query names only metrics and labels the Observer exports, every
// panel has a title and a description, and every query uses the data
// source variable.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("dashboards/keyedmutex.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboards/keyedmutex.json: %v", err)
	}
	x := export(t)
	if len(x.families) != 10 {
		t.Fatalf("the export has %d keyedmutex_ families (%v); want the 10 instruments", len(x.families), x.types)
	}

	dsVar := ""
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			if q := strings.Trim(string(v.Query), `"`); q != "prometheus" {
				t.Errorf("data source variable %q: query %s; want prometheus", v.Name, v.Query)
			}
			dsVar = "${" + v.Name + "}"
		case "query":
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				q.Query = strings.Trim(string(v.Query), `"`)
			}
			for _, b := range x.checkExpr(q.Query) {
				t.Errorf("variable %q: %s in %s", v.Name, b, q.Query)
			}
		}
	}
	if dsVar == "" {
		t.Fatal("no data source variable (type datasource) in templating")
	}

	used := map[string]bool{}
	var check func(ps []panel)
	check = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				check(p.Panels)
				continue
			}
			name := p.Title
			if strings.TrimSpace(p.Title) == "" {
				name = "(untitled)"
				t.Errorf("a panel has no title: %+v", p)
			}
			if strings.TrimSpace(p.Description) == "" {
				t.Errorf("panel %q has no description", name)
			}
			if p.Datasource == nil || p.Datasource.UID != dsVar {
				t.Errorf("panel %q: data source %+v; want uid %s", name, p.Datasource, dsVar)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", name)
			}
			for _, tg := range p.Targets {
				if tg.Datasource != nil && tg.Datasource.UID != dsVar {
					t.Errorf("panel %q: query data source %+v; want uid %s", name, tg.Datasource, dsVar)
				}
				for _, b := range x.checkExpr(tg.Expr) {
					t.Errorf("panel %q: %s in %s", name, b, tg.Expr)
				}
				for _, id := range ident.FindAllString(tg.Expr, -1) {
					if f, ok := x.series[id]; ok {
						used[f] = true
					}
				}
			}
		}
	}
	check(d.Panels)
	for f := range x.families {
		if !used[f] {
			t.Errorf("no panel shows %s", f)
		}
	}
}

// TestCheckExpr: the checker refuses what the dashboard must not have.
func TestCheckExpr(t *testing.T) {
	x := export(t)
	for _, tt := range []struct {
		expr string
		ok   bool
	}{
		{`sum by (keyedmutex_backend) (rate(keyedmutex_lock_acquisitions_total{job=~"$job"}[5m]))`, true},
		{`histogram_quantile(0.99, sum by (le) (rate(keyedmutex_lock_wait_duration_seconds_bucket{keyedmutex_outcome="acquired"}[5m])))`, true},
		{`rate(keyedmutex_lock_acquisitions[5m])`, false},                                   // no _total
		{`rate(keyedmutex_lock_wait_duration_bucket[5m])`, false},                           // no _seconds
		{`keyedmutex_lock_wait_duration_seconds`, false},                                    // a histogram has no such series
		{`rate(keyedmutex_lease_renewals_total{keyedmutex_outcome="acquired"}[5m])`, false}, // renewals are ok/failed
		{`rate(keyedmutex_handoffs_total{keyedmutex_kind="local"}[5m])`, false},             // the label is keyedmutex_handoff_kind
		{`sum by (backend) (rate(keyedmutex_notices_total[5m]))`, false},
		{`rate(keyedmutex_notices_total{keyedmutex_op="Lock"}[5m])`, false}, // notices have no op
		{`up`, false},
	} {
		if bad := x.checkExpr(tt.expr); (len(bad) == 0) != tt.ok {
			t.Errorf("checkExpr(%s) = %q; want ok = %v", tt.expr, bad, tt.ok)
		}
	}
}
