package otelkeyedmutex

import (
	"sync"

	"github.com/keyedmutex/keyedmutex/mutex"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Attribute keys.
const (
	backendKey = attribute.Key("keyedmutex.backend")
	opKey      = attribute.Key("keyedmutex.op")
	outcomeKey = attribute.Key("keyedmutex.outcome")
	kindKey    = attribute.Key("keyedmutex.handoff.kind")
	keyKey     = attribute.Key("keyedmutex.key")
)

// attrs is one attribute set, with the measurement options that carry
// it made once, so that recording it allocates nothing.
type attrs struct {
	kvs []attribute.KeyValue
	add []metric.AddOption
	rec []metric.RecordOption
}

func newAttrs(kvs ...attribute.KeyValue) *attrs {
	s := attribute.NewSet(kvs...)
	opt := metric.WithAttributeSet(s)
	return &attrs{kvs: s.ToSlice(), add: []metric.AddOption{opt}, rec: []metric.RecordOption{opt}}
}

// withKey returns a's attributes with keyedmutex.key = key.
func (a *attrs) withKey(key string) []attribute.KeyValue {
	kvs := make([]attribute.KeyValue, len(a.kvs), len(a.kvs)+1)
	copy(kvs, a.kvs)
	return append(kvs, keyKey.String(key))
}

// numOutcomes bounds the mutex.Outcome values with a table entry; others
// share entry 0, whose name is "unknown".
const numOutcomes = int(mutex.LostLease) + 1

func outcomeIndex(o mutex.Outcome) int {
	if int(o) < numOutcomes {
		return int(o)
	}
	return 0
}

// The ops with a table entry; others get their attributes made per event.
// distributed names the calls of [mutex.TokenReserver] (hybrid's remote
// acquisitions) LockN and TryLockN.
var ops = [...]string{"Lock", "TryLock", "LockN", "TryLockN"}

func opIndex(op string) int {
	for i, o := range ops {
		if op == o {
			return i
		}
	}
	return -1
}

// The values of keyedmutex.lease.renewals' outcome and of
// keyedmutex.handoffs' kind.
const (
	renewOK, renewFailed        = 0, 1
	handoffLocal, handoffRemote = 0, 1
)

// backendAttrs is every attribute set one backend's events use.
type backendAttrs struct {
	name     string
	base     *attrs                        // backend
	lockDone [len(ops)][numOutcomes]*attrs // backend, op, outcome
	hold     [numOutcomes]*attrs           // backend, outcome
	renewal  [2]*attrs                     // backend, outcome ok/failed
	handoff  [2]*attrs                     // backend, kind local/remote
}

func newBackendAttrs(name string) *backendAttrs {
	b := &backendAttrs{name: name}
	be := backendKey.String(name)
	b.base = newAttrs(be)
	for i, op := range ops {
		for o := range numOutcomes {
			b.lockDone[i][o] = newAttrs(be, opKey.String(op), outcomeKey.String(mutex.Outcome(o).String()))
		}
	}
	for o := range numOutcomes {
		b.hold[o] = newAttrs(be, outcomeKey.String(mutex.Outcome(o).String()))
	}
	b.renewal[renewOK] = newAttrs(be, outcomeKey.String("ok"))
	b.renewal[renewFailed] = newAttrs(be, outcomeKey.String("failed"))
	b.handoff[handoffLocal] = newAttrs(be, kindKey.String("local"))
	b.handoff[handoffRemote] = newAttrs(be, kindKey.String("remote"))
	return b
}

// lockDoneAttrs returns the attributes of a LockDone event of b: from the
// table, or made for an op the table lacks.
func (b *backendAttrs) lockDoneAttrs(op string, o mutex.Outcome) *attrs {
	if i := opIndex(op); i >= 0 {
		return b.lockDone[i][outcomeIndex(o)]
	}
	return newAttrs(backendKey.String(b.name), opKey.String(op), outcomeKey.String(o.String()))
}

// backends holds the attribute tables of the library's backends, made
// once, and of any other backend, made at its first event.
type backends struct {
	local, distributed, hybrid *backendAttrs
	others                     sync.Map // backend name -> *backendAttrs
}

func newBackends() *backends {
	return &backends{
		local:       newBackendAttrs("local"),
		distributed: newBackendAttrs("distributed"),
		hybrid:      newBackendAttrs("hybrid"),
	}
}

func (bs *backends) get(name string) *backendAttrs {
	switch name {
	case "local":
		return bs.local
	case "distributed":
		return bs.distributed
	case "hybrid":
		return bs.hybrid
	}
	if b, ok := bs.others.Load(name); ok {
		return b.(*backendAttrs)
	}
	b, _ := bs.others.LoadOrStore(name, newBackendAttrs(name))
	return b.(*backendAttrs)
}
