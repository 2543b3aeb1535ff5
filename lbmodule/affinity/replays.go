package affinity

import (
	"github.com/caddylb/caddylb/internal/boundedcache"
)

// replays remembers, per node, what was decided for an LB cookie that
// asked for work: recording a new session, refreshing or re-signing one,
// moving one off a removed upstream. A browser comes back with the cookie
// it was given in answer; a client without a cookie jar (scripts, API
// clients, load tools) keeps sending the first one, and without this
// every such request would cost store commands and a new Set-Cookie. With
// it, any number of replays of one cookie cost a few store commands (one
// per node) and one re-issue.
//
// It maps a cookie's value to the dial of the upstream decided, so a
// newer cookie for the same session is decided afresh. Entries live
// refreshAfter (half the TTL): a replayed cookie is looked at again about
// as often as a returning browser's binding is refreshed. Bounded at
// replayCapacity entries, about 100 bytes each: at most 1.6 MB a policy.
type replays = boundedcache.Cache[string]

const replayCapacity = 1 << 14
