package sessionstore

import "strconv"

// clusterGroups is how many groups a Redis Cluster store spreads its
// bindings over. Redis Cluster runs a script only when every key it
// touches lives in one hash slot, and a binding's script touches the
// binding, the sorted sets of its old and new upstream and the set of
// upstream names. Each group therefore has its own sorted sets and name
// set, all carrying the group's hash tag ({0} to {63}) like the group's
// bindings: one write is one slot, and Counts sums the groups. 64 tags
// fall into 64 distinct slots, which a cluster of a few primaries
// spreads about evenly (3 primaries: 20 to 23 groups each).
const clusterGroups = 64

// keyLayout places a store's keys on the deployment. On a single server
// (or behind Sentinels) there is one group whose tag is empty, which is
// the layout of every earlier version: no key changes name on upgrade.
type keyLayout struct {
	tags []string
}

var (
	singleLayout  = keyLayout{tags: []string{""}}
	clusterLayout = func() keyLayout {
		tags := make([]string, clusterGroups)
		for i := range tags {
			tags[i] = "{" + strconv.Itoa(i) + "}"
		}
		return keyLayout{tags: tags}
	}()
)

// groups is the number of groups.
func (l keyLayout) groups() int { return len(l.tags) }

// group is the group of a session key.
func (l keyLayout) group(key string) int {
	if len(l.tags) == 1 {
		return 0
	}
	h := uint32(2166136261) // FNV-1a, inline so the hit path allocates nothing
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(len(l.tags)))
}

// groupPrefix is the prefix of every key of group g: the store's prefix
// and the group's hash tag. The scripts name the upstream sets under it.
func (l keyLayout) groupPrefix(prefix string, g int) string { return prefix + l.tags[g] }

// bindingKey is where the binding of key lives.
func (l keyLayout) bindingKey(prefix, key string) string {
	return prefix + l.tags[l.group(key)] + "b:" + key
}

// upstreamsKey is the set of upstream names of group g.
func (l keyLayout) upstreamsKey(prefix string, g int) string {
	return prefix + l.tags[g] + "upstreams"
}

// epochKey holds group g's epoch: a random token the first node to find
// it missing sets, so that every node notices a store that lost its data.
func (l keyLayout) epochKey(prefix string, g int) string {
	return prefix + l.tags[g] + "epoch"
}

// fleetPrefix is where the node registry lives, in one slot.
func fleetPrefix(prefix string) string { return prefix + "{fleet}" }
