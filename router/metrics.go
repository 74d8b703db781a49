package router

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the delivery counters exported on /metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	redis    *prometheus.CounterVec
	reg      prometheus.Registerer
}

// NewMetrics registers Ember's delivery metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_requests_total",
			Help: "Input events handled, by type and outcome (done, failed, duplicate, busy, invalid, dead_letter, lease_lost, error).",
		}, []string{"type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ember_request_duration_seconds",
			Help:    "Time to handle one delivery of an input event.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"type"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_retries_total",
			Help: "Transient driver failures retried with backoff.",
		}, []string{"type"}),
		redis: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_redis_roundtrips_total",
			Help: "Redis round trips of the delivery protocol, by step.",
		}, []string{"step"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.retries, m.redis)
	}
	m.reg = reg
	return m
}

// watchInFlight exports ember_in_flight_records{type}: the records a
// function holds at once (running, queued behind their volume, parked).
func (m *Metrics) watchInFlight(typ string, count func() int) {
	if m.reg == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "ember_in_flight_records",
		Help:        "Records a function holds: running, queued behind their volume, or parked after a busy answer.",
		ConstLabels: prometheus.Labels{"type": typ},
	}, func() float64 { return float64(count()) }))
}

func (m *Metrics) observe(typ, outcome string, d time.Duration) {
	m.requests.WithLabelValues(typ, outcome).Inc()
	m.duration.WithLabelValues(typ).Observe(d.Seconds())
}
