// Package promreg registers package-level Prometheus collectors in the
// registry Caddy makes for each config load. The collectors outlive
// reloads, so every config exports the same series; registering one that
// the registry already holds is not an error.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Register adds collectors to registry, ignoring those already there.
func Register(registry prometheus.Registerer, collectors ...prometheus.Collector) error {
	for _, c := range collectors {
		if err := registry.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// Sample is one series of a collector as read back: its labels and its
// value (a counter's or gauge's value; a histogram's count, with its sum).
type Sample struct {
	Labels map[string]string
	Value  float64
	Sum    float64
}

// Read returns the current series of c, so that a reader in the process
// (the dashboard) uses the very counters the metrics export.
func Read(c prometheus.Collector) []Sample {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var out []Sample
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil {
			continue
		}
		s := Sample{Labels: map[string]string{}}
		for _, l := range d.GetLabel() {
			s.Labels[l.GetName()] = l.GetValue()
		}
		switch {
		case d.Counter != nil:
			s.Value = d.Counter.GetValue()
		case d.Gauge != nil:
			s.Value = d.Gauge.GetValue()
		case d.Histogram != nil:
			s.Value, s.Sum = float64(d.Histogram.GetSampleCount()), d.Histogram.GetSampleSum()
		default:
			continue
		}
		out = append(out, s)
	}
	return out
}

// Total sums the values (and sums) of the samples whose labels include
// all of match.
func Total(samples []Sample, match map[string]string) (value, sum float64) {
next:
	for _, s := range samples {
		for k, v := range match {
			if s.Labels[k] != v {
				continue next
			}
		}
		value += s.Value
		sum += s.Sum
	}
	return value, sum
}
