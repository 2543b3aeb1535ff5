package logship

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddylb/caddylb/internal/promreg"
)

// The collectors are package-level so that each config's registry
// (Caddy makes one per load) exports the same series. Every series is
// labelled with the spool directory, which identifies one writer.
var (
	shippedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "shipped_bytes_total",
		Help: "Bytes (gzipped) of spool files the object store acknowledged.",
	}, []string{"spool"})
	shippedFiles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "shipped_files_total",
		Help: "Spool files the object store acknowledged.",
	}, []string{"spool"})
	uploadFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "upload_failures_total",
		Help: "Failed upload attempts (each is retried with backoff).",
	}, []string{"spool"})
	droppedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "dropped_bytes_total",
		Help: "Log bytes that were not shipped, by reason: drop_oldest and refuse_new (spool full), write_error (the spool could not be written).",
	}, []string{"spool", "reason"})
	pendingFiles = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "pending_files",
		Help: "Rolled spool files waiting for their upload.",
	}, []string{"spool"})
	spoolBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "spool_bytes",
		Help: "Bytes in the spool directory: pending files and the file being written.",
	}, []string{"spool"})
	storeReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "store_ready",
		Help: "1 while the writer has the asset store of the running config to ship to; 0 while it waits for one (an alarm is logged after 5s).",
	}, []string{"spool"})
)

// spoolMetrics are one spool's series.
type spoolMetrics struct {
	shippedBytes, shippedFiles, failures prometheus.Counter
	droppedOldest, refused, writeErrors  prometheus.Counter
	pendingFiles, spoolBytes, storeReady prometheus.Gauge
}

func (m spoolMetrics) setStoreReady(ready bool) {
	if ready {
		m.storeReady.Set(1)
	} else {
		m.storeReady.Set(0)
	}
}

func metricsFor(dir string) spoolMetrics {
	return spoolMetrics{
		shippedBytes:  shippedBytes.WithLabelValues(dir),
		shippedFiles:  shippedFiles.WithLabelValues(dir),
		failures:      uploadFailures.WithLabelValues(dir),
		droppedOldest: droppedBytes.WithLabelValues(dir, reasonDropOldest),
		refused:       droppedBytes.WithLabelValues(dir, reasonRefuseNew),
		writeErrors:   droppedBytes.WithLabelValues(dir, reasonWriteError),
		pendingFiles:  pendingFiles.WithLabelValues(dir),
		spoolBytes:    spoolBytes.WithLabelValues(dir),
		storeReady:    storeReady.WithLabelValues(dir),
	}
}

func registerMetrics(registry prometheus.Registerer) error {
	return promreg.Register(registry, shippedBytes, shippedFiles, uploadFailures, droppedBytes, pendingFiles, spoolBytes, storeReady)
}
