package logship

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddylb/caddylb/internal/promreg"
)

// The collectors are package-level so that each config's registry
// (Caddy makes one per load) exports the same series. Every series is
// labelled with the spool directory, which identifies one writer, and
// its source: "log:<name>" for an `output s3` log writer, "files:<name>"
// for a `ship_logs` file shipper.
var (
	shippedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "shipped_bytes_total",
		Help: "Bytes (gzipped) of spool files the object store acknowledged.",
	}, []string{"spool", "source"})
	shippedFiles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "shipped_files_total",
		Help: "Spool files the object store acknowledged.",
	}, []string{"spool", "source"})
	uploadFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "upload_failures_total",
		Help: "Failed upload attempts (each is retried with backoff).",
	}, []string{"spool", "source"})
	droppedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "dropped_bytes_total",
		Help: "Log bytes that were not shipped, by reason: drop_oldest and refuse_new (spool full), write_error (the spool could not be written).",
	}, []string{"spool", "source", "reason"})
	pendingFiles = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "pending_files",
		Help: "Rolled spool files waiting for their upload.",
	}, []string{"spool", "source"})
	spoolBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "spool_bytes",
		Help: "Bytes in the spool directory: pending files and the file being written.",
	}, []string{"spool", "source"})
	lastUpload = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "last_upload_timestamp_seconds",
		Help: "Unix time of the last spool file the object store acknowledged (absent before the first).",
	}, []string{"spool", "source"})
	storeReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "store_ready",
		Help: "1 while the writer has the asset store of the running config to ship to; 0 while it waits for one (an alarm is logged after 5s).",
	}, []string{"spool", "source"})
)

// The series of file shippers (ship_logs), labelled with the source
// ("files:<name>").
var (
	fileLines = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "file_lines_total",
		Help: "Lines (and pieces of long lines) read from followed log files into the spool.",
	}, []string{"source"})
	fileReadBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "file_read_bytes_total",
		Help: "Bytes of followed log files read into the spool.",
	}, []string{"source"})
	fileSplitPieces = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "file_split_pieces_total",
		Help: "Pieces cut from lines longer than max_line (each but the last marked \"more\").",
	}, []string{"source"})
	fileTruncations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "file_truncations_total",
		Help: "Followed files found truncated or rewritten (copytruncate) and read again from their start.",
	}, []string{"source"})
	fileCheckpoints = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "file_checkpoints_total",
		Help: "Checkpoints saved: one per batch (up to 1 MiB of lines, 4 MiB of records), over all the files a poll read.",
	}, []string{"source"})
	filesWatched = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "files_watched",
		Help: "Log files followed: those the globs match and rotated ones not finished yet.",
	}, []string{"source"})
	fileLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddylb", Subsystem: "logship", Name: "file_lag_bytes",
		Help: "Bytes written to followed files and not yet read into the spool.",
	}, []string{"source"})
)

// tailMetrics are one file shipper's series.
type tailMetrics struct {
	lines, readBytes, splitPieces, truncations, checkpoints prometheus.Counter
	watched, lag                                            prometheus.Gauge
}

func tailMetricsFor(source string) tailMetrics {
	return tailMetrics{
		lines: fileLines.WithLabelValues(source), readBytes: fileReadBytes.WithLabelValues(source),
		splitPieces: fileSplitPieces.WithLabelValues(source), truncations: fileTruncations.WithLabelValues(source),
		checkpoints: fileCheckpoints.WithLabelValues(source),
		watched:     filesWatched.WithLabelValues(source), lag: fileLag.WithLabelValues(source),
	}
}

// spoolMetrics are one spool's series.
type spoolMetrics struct {
	shippedBytes, shippedFiles, failures prometheus.Counter
	droppedOldest, refused, writeErrors  prometheus.Counter
	pendingFiles, spoolBytes, storeReady prometheus.Gauge
	lastUpload                           func() prometheus.Gauge // created on first upload
}

func (m spoolMetrics) setStoreReady(ready bool) {
	if ready {
		m.storeReady.Set(1)
	} else {
		m.storeReady.Set(0)
	}
}

func metricsFor(dir, source string) spoolMetrics {
	return spoolMetrics{
		shippedBytes:  shippedBytes.WithLabelValues(dir, source),
		shippedFiles:  shippedFiles.WithLabelValues(dir, source),
		failures:      uploadFailures.WithLabelValues(dir, source),
		droppedOldest: droppedBytes.WithLabelValues(dir, source, reasonDropOldest),
		refused:       droppedBytes.WithLabelValues(dir, source, reasonRefuseNew),
		writeErrors:   droppedBytes.WithLabelValues(dir, source, reasonWriteError),
		pendingFiles:  pendingFiles.WithLabelValues(dir, source),
		spoolBytes:    spoolBytes.WithLabelValues(dir, source),
		storeReady:    storeReady.WithLabelValues(dir, source),
		lastUpload:    func() prometheus.Gauge { return lastUpload.WithLabelValues(dir, source) },
	}
}

func registerMetrics(registry prometheus.Registerer) error {
	return promreg.Register(registry, shippedBytes, shippedFiles, uploadFailures, droppedBytes, pendingFiles, spoolBytes, storeReady, lastUpload,
		fileLines, fileReadBytes, fileSplitPieces, fileTruncations, fileCheckpoints, filesWatched, fileLag)
}

// SpoolStats is one spool's state as its metrics tell it.
type SpoolStats struct {
	Spool        string    `json:"spool"`
	Source       string    `json:"source"`
	PendingFiles int64     `json:"pending_files"`
	SpoolBytes   int64     `json:"spool_bytes"`
	ShippedFiles int64     `json:"shipped_files"`
	ShippedBytes int64     `json:"shipped_bytes"`
	Failures     int64     `json:"upload_failures"`
	DroppedBytes int64     `json:"dropped_bytes"`
	StoreReady   bool      `json:"store_ready"`
	LastUpload   time.Time `json:"last_upload,omitzero"`
}

// Spools returns the state of every spool this process has written, by
// spool directory.
func Spools() []SpoolStats {
	byDir := map[string]*SpoolStats{}
	get := func(s promreg.Sample) *SpoolStats {
		dir := s.Labels["spool"]
		st := byDir[dir]
		if st == nil {
			st = &SpoolStats{Spool: dir, Source: s.Labels["source"]}
			byDir[dir] = st
		}
		return st
	}
	for _, m := range []struct {
		series prometheus.Collector
		set    func(*SpoolStats, float64)
	}{
		{pendingFiles, func(st *SpoolStats, v float64) { st.PendingFiles = int64(v) }},
		{spoolBytes, func(st *SpoolStats, v float64) { st.SpoolBytes = int64(v) }},
		{shippedFiles, func(st *SpoolStats, v float64) { st.ShippedFiles = int64(v) }},
		{shippedBytes, func(st *SpoolStats, v float64) { st.ShippedBytes = int64(v) }},
		{uploadFailures, func(st *SpoolStats, v float64) { st.Failures = int64(v) }},
		{droppedBytes, func(st *SpoolStats, v float64) { st.DroppedBytes += int64(v) }}, // summed over reasons
		{storeReady, func(st *SpoolStats, v float64) { st.StoreReady = v == 1 }},
		{lastUpload, func(st *SpoolStats, v float64) { st.LastUpload = time.Unix(0, int64(v*1e9)).UTC() }},
	} {
		for _, s := range promreg.Read(m.series) {
			m.set(get(s), s.Value)
		}
	}
	out := make([]SpoolStats, 0, len(byDir))
	for _, st := range byDir {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spool < out[j].Spool })
	return out
}
