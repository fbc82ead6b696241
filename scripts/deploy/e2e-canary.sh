# shellcheck shell=bash
# The canary walkthrough's assertion for make e2e, sourced (never run):
#
#   source scripts/deploy/e2e-canary.sh
#   E2E_OUT=<folder> assert_canary
#
# make e2e runs docs/walkthroughs/canary.md's blocks and saves the output of
# the ones marked <!-- e2e: canary-split --> and <!-- e2e: canary-risky -->
# as $E2E_OUT/canary-split.out and $E2E_OUT/canary-risky.out, both placed at
# WEIGHT=50:
#
#   canary-split.out   one line per order: the payment version that charged
#                      it, "v1" or "v2"
#   canary-risky.out   one line per order paid with pm_card_risky: the
#                      version, the order's status and, for a decline, the
#                      reason: "v2 REJECTED RISK_SCREEN" or "v1 CONFIRMED"
#
# assert_canary returns 1 with a message on stderr unless v2's share of the
# split is 50% +- 25 points (over 40 orders the binomial spread is about 8
# points, so this fails on a split that is not happening, not on chance),
# every risky order charged by v2 was REJECTED by its risk screen, every one
# charged by v1 was CONFIRMED, and both versions took some of them.

# Too few orders say nothing about a split.
CANARY_MIN_ORDERS=20

_canary_fail() {
  printf 'canary: %s\n' "$*" >&2
  return 1
}

# The lines of a file without blank ones and carriage returns.
_canary_lines() {
  tr -d '\r' <"$1" | grep -v '^[[:space:]]*$' || true
}

assert_canary() {
  local out=${E2E_OUT:-}
  [[ -n $out ]] || { _canary_fail "E2E_OUT must name the folder of the walkthrough blocks' outputs"; return 1; }
  local split=$out/canary-split.out risky=$out/canary-risky.out
  local line version status reason extra
  local v1=0 v2=0 total bad=""

  [[ -f $split ]] || { _canary_fail "no $split: the walkthrough's canary-split block did not run"; return 1; }
  while IFS= read -r line; do
    case $line in
      v1) v1=$((v1 + 1)) ;;
      v2) v2=$((v2 + 1)) ;;
      *) bad+=" '$line'" ;;
    esac
  done < <(_canary_lines "$split")
  [[ -z $bad ]] || { _canary_fail "canary-split: lines that name no payment version (v1 or v2):$bad"; return 1; }
  total=$((v1 + v2))
  ((total >= CANARY_MIN_ORDERS)) ||
    { _canary_fail "canary-split: $total orders, too few to judge a split (at least $CANARY_MIN_ORDERS)"; return 1; }
  if ((100 * v2 < 25 * total || 100 * v2 > 75 * total)); then
    _canary_fail "canary-split: v2 charged $v2 of $total orders ($((100 * v2 / total))%), outside 50% +- 25 at WEIGHT=50"
    return 1
  fi
  printf 'canary: v2 charged %d of %d orders (%d%%), v1 %d\n' "$v2" "$total" "$((100 * v2 / total))" "$v1" >&2

  [[ -f $risky ]] || { _canary_fail "no $risky: the walkthrough's canary-risky block did not run"; return 1; }
  local rejected=0 confirmed=0
  while IFS= read -r line; do
    read -r version status reason extra <<<"$line"
    if [[ $version == v2 && $status == REJECTED && $reason == RISK_SCREEN && -z $extra ]]; then
      rejected=$((rejected + 1))
    elif [[ $version == v1 && $status == CONFIRMED && -z $reason ]]; then
      confirmed=$((confirmed + 1))
    elif [[ $version == v2 ]]; then
      bad+=" '$line' (v2 must reject pm_card_risky: 'v2 REJECTED RISK_SCREEN')"
    elif [[ $version == v1 ]]; then
      bad+=" '$line' (v1 has no risk screen: 'v1 CONFIRMED')"
    else
      bad+=" '$line' (no payment version)"
    fi
  done < <(_canary_lines "$risky")
  [[ -z $bad ]] || { _canary_fail "canary-risky:$bad"; return 1; }
  ((rejected > 0 && confirmed > 0)) ||
    { _canary_fail "canary-risky: $rejected rejected by v2, $confirmed confirmed by v1: both versions must take some risky orders"; return 1; }
  printf "canary: pm_card_risky: %d rejected by v2's risk screen, %d confirmed by v1\n" "$rejected" "$confirmed" >&2
}
