package tgt

import (
	"bufio"
	"regexp"
	"strconv"
	"strings"
)

// liveTarget is what `tgtadm --lld iscsi --op show --mode target` says of one
// target. tgtadm has no machine-readable output; its text layout has been
// stable since tgt 1.0 and is what Cinder parses too.
type liveTarget struct {
	TID  int
	IQN  string
	LUNs map[int]string // LUN -> backing store path ("None" for the controller, LUN 0)
	// Accounts are the incoming CHAP accounts bound to the target.
	Accounts []string
	// Nexuses counts I_T nexuses: initiators logged in right now.
	Nexuses int
}

var targetLineRE = regexp.MustCompile(`^Target (\d+): (\S+)$`)

// parseTargets reads tgtadm's target listing:
//
//	Target 1: iqn.2010-10.org.openstack:volume-…
//	    System information:
//	    I_T nexus information:
//	        I_T nexus: 2
//	    LUN information:
//	        LUN: 1
//	            Backing store path: /dev/…
//	    Account information:
//	        username
//	        otheruser (outgoing)
//	    ACL information:
//	        ALL
func parseTargets(out string) []liveTarget {
	var (
		targets []liveTarget
		cur     *liveTarget
		section string
		lun     = -1
	)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if m := targetLineRE.FindStringSubmatch(raw); m != nil {
			tid, _ := strconv.Atoi(m[1])
			targets = append(targets, liveTarget{TID: tid, IQN: m[2], LUNs: map[int]string{}})
			cur, section, lun = &targets[len(targets)-1], "", -1
			continue
		}
		if cur == nil || line == "" {
			continue
		}
		if strings.HasSuffix(line, " information:") {
			section = strings.TrimSuffix(line, " information:")
			continue
		}
		switch section {
		case "I_T nexus":
			if strings.HasPrefix(line, "I_T nexus:") {
				cur.Nexuses++
			}
		case "LUN":
			if v, ok := strings.CutPrefix(line, "LUN:"); ok {
				lun, _ = strconv.Atoi(strings.TrimSpace(v))
				cur.LUNs[lun] = ""
			} else if v, ok := strings.CutPrefix(line, "Backing store path:"); ok && lun >= 0 {
				cur.LUNs[lun] = strings.TrimSpace(v)
			}
		case "Account":
			if !strings.HasSuffix(line, "(outgoing)") {
				cur.Accounts = append(cur.Accounts, line)
			}
		}
	}
	return targets
}

// findTarget returns the target named iqn, if tgtd lists it.
func findTarget(targets []liveTarget, iqn string) (liveTarget, bool) {
	for _, t := range targets {
		if t.IQN == iqn {
			return t, true
		}
	}
	return liveTarget{}, false
}
