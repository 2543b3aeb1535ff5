package rendezvous

import (
	"fmt"
	"testing"
)

// TestJoiningMovesOnlyWhatItWins: adding a fourth upstream moves only the
// keys it now wins, about a quarter.
func TestJoiningMovesOnlyWhatItWins(t *testing.T) {
	pick := func(ids []string, key string) string {
		best, bestW := "", uint64(0)
		for _, id := range ids {
			if w := Weight(id, key); best == "" || w > bestW {
				best, bestW = id, w
			}
		}
		return best
	}
	three := []string{"a:1", "b:1", "c:1"}
	four := append(append([]string{}, three...), "d:1")
	moved := 0
	for i := range 1000 {
		key := fmt.Sprint("k", i)
		before, after := pick(three, key), pick(four, key)
		if before != after {
			if after != "d:1" {
				t.Fatalf("key %s moved from %s to %s, not to the new upstream", key, before, after)
			}
			moved++
		}
	}
	if moved < 150 || moved > 350 {
		t.Fatalf("%d of 1000 keys moved to the new upstream, want about 250", moved)
	}
}
