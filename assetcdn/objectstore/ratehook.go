package objectstore

import "context"

// RateRaiser is what guards an upload's pace (asset_offload's min_rate):
// a store that holds memory for an upload while it reads it, such as a
// part buffer of the S3 store, raises the least rate the client must keep
// for as long as it holds it, so that a slow client cannot pin the
// memory. restore lowers it again.
type RateRaiser interface {
	RaiseMinRate(bytesPerSecond float64) (restore func())
}

type rateRaiserKey struct{}

// WithRateRaiser returns ctx carrying r for the stores to find.
func WithRateRaiser(ctx context.Context, r RateRaiser) context.Context {
	return context.WithValue(ctx, rateRaiserKey{}, r)
}

// RaiseMinRate raises the minimum rate of the upload whose context is
// ctx, while the caller (a store) holds memory for it; it does nothing
// for an upload without a guard.
func RaiseMinRate(ctx context.Context, rate float64) (restore func()) {
	if r, ok := ctx.Value(rateRaiserKey{}).(RateRaiser); ok {
		return r.RaiseMinRate(rate)
	}
	return func() {}
}
