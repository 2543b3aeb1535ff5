package assetcdn

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddylb/caddylb/internal/promreg"
)

// Outcomes of an upload request.
const (
	outcomeStored       = "stored"
	outcomeTooLarge     = "too_large"
	outcomeTypeRefused  = "type_refused"
	outcomeBadRequest   = "bad_request"
	outcomeUnauthorized = "unauthorized"
	outcomeClientGone   = "client_gone"
	outcomeTooSlow      = "too_slow"
	outcomeStoreError   = "store_error"
)

var (
	uploads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb",
		Subsystem: "asset_offload",
		Name:      "requests_total",
		Help:      "Upload requests by outcome: stored, too_large, type_refused, bad_request, unauthorized, client_gone, too_slow (cut off under min_rate), store_error.",
	}, []string{"outcome"})
	uploadedBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddylb",
		Subsystem: "asset_offload",
		Name:      "stored_bytes_total",
		Help:      "Bytes of files stored by asset_offload.",
	})
	cleanedUp = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddylb",
		Subsystem: "asset_offload",
		Name:      "cleaned_up_objects_total",
		Help:      "Stored files removed because the request failed or the backend did not accept them.",
	})
)

func countUpload(outcome string) { uploads.WithLabelValues(outcome).Inc() }

func registerOffloadMetrics(registry prometheus.Registerer) error {
	return promreg.Register(registry, uploads, uploadedBytes, cleanedUp)
}

// UploadStats are this process's asset_offload totals as its metrics count
// them: requests by outcome and the bytes stored.
type UploadStats struct {
	Outcomes    map[string]int64 `json:"outcomes"`
	StoredBytes int64            `json:"stored_bytes"`
	CleanedUp   int64            `json:"cleaned_up"`
}

// Uploads reads the asset_offload metrics.
func Uploads() UploadStats {
	st := UploadStats{Outcomes: map[string]int64{}}
	for _, s := range promreg.Read(uploads) {
		st.Outcomes[s.Labels["outcome"]] = int64(s.Value)
	}
	b, _ := promreg.Total(promreg.Read(uploadedBytes), nil)
	c, _ := promreg.Total(promreg.Read(cleanedUp), nil)
	st.StoredBytes, st.CleanedUp = int64(b), int64(c)
	return st
}
