#!/bin/sh
# /init of the Linux guest (busybox sh): Linux's own NMI machinery as tests.
#
# One line per check on the console, for tests/linux/run.py:
#   LINUX: PASS <check> <details> | LINUX: FAIL <check> <details> | LINUX: SKIP <check> <reason>
# then "LINUX: DONE passed=N failed=N skipped=N" and the end of the run.  Other
# lines: "LINUX: INIT ..." first thing (the runner's boot-to-/init time),
# "LINUX: INFO ...", and after DONE under the hypervisor "LINUX: ISOLATION ...".
# Explanations of a failure are printed as "linuxtest: ..." lines before it.
#
# Kernel command line (all optional; docs/linux-guest.md):
#   linuxtest=shell            no tests: a shell on the console (make linux)
#   linuxtest.checks=a,b,...   which checks (default: all of them, in this order)
#                              nmi-backtrace,paced-nmis,nmi-flood,stop-the-world,
#                              nothing-spurious,nmi-accounting,isolation
#   linuxtest.triggers=3       sysrq-l rounds in nmi-backtrace
#   linuxtest.nmis=20          paced NMIs the hypervisor sends to each other CPU
#   linuxtest.flood=50         NMIs in the hypervisor's unpaced burst
#   linuxtest.rounds=10        stop-the-world rounds, once without TLB flush, once with
#   linuxtest.busy=0           1: keep the other CPUs busy during the hypervisor's checks
#   linuxtest.after=poweroff   or shell: what follows DONE (natively, or without isolation)
#   linuxtest.loglevel=4       console log level while the checks run (the
#                              backtraces stay in dmesg); the shell gets 7
#   linuxtest.fakehv=1         the test port answered by tests/linux/fakehv, a
#                              stand-in inside the guest (=drop: one that loses an
#                              NMI): tests these checks without the hypervisor

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# If the kernel found no /dev/console to give us, this is where output starts.
exec </dev/console >/dev/console 2>&1
read -r up _ </proc/uptime
echo "LINUX: INIT uptime=$up kernel=$(uname -r) cpus=$(cat /sys/devices/system/cpu/online)"

# ---- configuration ---------------------------------------------------------------
mode=run checks=nmi-backtrace,paced-nmis,nmi-flood,stop-the-world,nothing-spurious,nmi-accounting,isolation
triggers=3 nmis=20 flood=50 rounds=10 busy=0 after=poweroff loglevel=4 fakehv=0
for word in $(cat /proc/cmdline); do
	case "$word" in
	linuxtest=*) mode=${word#*=} ;;
	linuxtest.checks=*) checks=${word#*=} ;;
	linuxtest.triggers=*) triggers=${word#*=} ;;
	linuxtest.nmis=*) nmis=${word#*=} ;;
	linuxtest.flood=*) flood=${word#*=} ;;
	linuxtest.rounds=*) rounds=${word#*=} ;;
	linuxtest.busy=*) busy=${word#*=} ;;
	linuxtest.after=*) after=${word#*=} ;;
	linuxtest.loglevel=*) loglevel=${word#*=} ;;
	linuxtest.fakehv=*) fakehv=${word#*=} ;;
	esac
done

shell() {
	echo 7 >/proc/sys/kernel/printk
	export HOME=/root TERM=${TERM:-vt102} PS1='linux:\w# '
	cd /root
	echo "linuxtest: busybox shell on $(cat /sys/class/tty/console/active 2>/dev/null);" \
		"'hvcmd 1' pings the hypervisor; exit powers off"
	# A session of its own with the console as controlling tty: job control, ^C.
	setsid cttyhack sh -l
	poweroff -f
}

[ "$mode" = shell ] && shell

passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); echo "LINUX: PASS $*"; }
fail() { failed=$((failed + 1)); echo "LINUX: FAIL $*"; }
skip() { skipped=$((skipped + 1)); echo "LINUX: SKIP $*"; }
why() { echo "linuxtest: $*" >&2; }
wanted() { case ",$checks," in *",$1,"*) return 0 ;; esac; return 1; }
isnum() { case "$1" in '' | *[!0-9]*) return 1 ;; esac; return 0; }
for v in triggers nmis flood rounds; do
	eval "val=\$$v"
	if ! isnum "$val" || [ "$val" -lt 1 ] || [ "$val" -gt 255 ]; then
		why "linuxtest.$v=$val is not in 1..255: using the default"
		case $v in triggers) triggers=3 ;; nmis) nmis=20 ;; flood) flood=50 ;; rounds) rounds=10 ;; esac
	fi
done

# Everything from here runs on CPU 0: the hypervisor's "every other CPU" and the
# sysrq sender are then known.  Children inherit the affinity.
taskset -p 1 $$ >/dev/null || why "could not pin /init to CPU 0"
echo "$loglevel" >/proc/sys/kernel/printk

# The online CPUs, in the order of /proc/interrupts' header, and the others.
cpus=$(awk 'NR == 1 { for (i = 1; i <= NF; i++) { sub("CPU", "", $i); printf "%s ", $i }; exit }' /proc/interrupts)
others=
for c in $cpus; do [ "$c" -ne 0 ] && others="$others $c"; done
others=${others# }

# snap P: P_<cpu>=<NMI: count> for every online CPU.
snap() {
	eval "$(awk -v p="$1" 'NR == 1 { for (i = 1; i <= NF; i++) { sub("CPU", "", $i); cpu[i] = $i }; n = NF }
		$1 == "NMI:" { for (i = 1; i <= n; i++) printf "%s_%s=%s\n", p, cpu[i], $(i + 1) }' /proc/interrupts)"
}
# rise CPU A B: B_cpu - A_cpu
rise() { eval "echo \$((\$${3}_$1 - \$${2}_$1))"; }
# kcount PATTERN: lines of the kernel log matching PATTERN (grep -E)
kcount() { dmesg | grep -cE "$1"; }
# bt CPU: backtraces that CPU printed ("NMI backtrace for cpu 1", or "... skipped:
# idling at ..." when the NMI found it idle)
bt() { kcount "NMI backtrace for cpu $1( |\$)"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# ge A B: A >= B for decimals
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
UNKNOWN='NMI received for unknown reason'
DAZED='Dazed and confused'
TROUBLE='clocksource.*unstable|rcu.*stall|soft lockup|hard LOCKUP|BUG:|WARNING:'

# ---- the hypervisor's test port (hvcmd) --------------------------------------------
hvcmd=hvcmd
[ "$fakehv" != 0 ] && hvcmd=fakehv && export FAKEHV_MODE="$fakehv"
hv=0
ping=$($hvcmd 1 2>&1)
case "$ping" in
1447905358) hv=1 ;; # 0x564D484E
4294967295) ;;      # nothing there: the ports read 0xFF
*) fail test-port "PING answered '$ping' (hypervisor: 1447905358, none: 4294967295)" ;;
esac
echo "LINUX: INFO hypervisor=$([ $hv = 1 ] && echo yes || echo no)$([ $hvcmd = fakehv ] && echo " (fakehv=$fakehv)") cpus=$(echo $cpus | tr ' ' ,)" \
	"checks=$checks triggers=$triggers nmis=$nmis flood=$flood rounds=$rounds busy=$busy"
# NMIs the hypervisor delivered from outside: each may legally be "unknown" to Linux.
delivered=0

# hvnum CMD A1 A2: hvcmd's answer; when it is no number, says so and prints -1.
hvnum() {
	r=$($hvcmd "$@" 2>&1)
	isnum "$r" && { echo "$r"; return 0; }
	why "hvcmd $* answered '$r'"
	echo -1
	return 1
}
# injected CPU: the hypervisor's count of NMIs injected into that guest CPU (low 32 bits)
injected() { hvnum 6 "$1"; }

# Busy loops on the other CPUs while the hypervisor works, when asked.
spinners=
spin_start() {
	[ "$busy" = 1 ] || return 0
	for c in $others; do
		taskset "$(printf '%x' $((1 << c)))" sh -c 'while :; do :; done' &
		spinners="$spinners $!"
	done
}
spin_stop() {
	[ -n "$spinners" ] && kill $spinners 2>/dev/null && wait $spinners 2>/dev/null
	spinners=
}

# ---- nmi-backtrace: Linux's own cross-CPU NMIs ---------------------------------------
check_nmi_backtrace() {
	[ -n "$others" ] || { skip nmi-backtrace "one CPU: nobody to send an NMI to"; return; }
	ok=1
	u0=$(kcount "$UNKNOWN|$DAZED")
	for c in $others; do eval "bt0_$c=$(bt $c)"; done
	snap a
	i=0
	while [ $i -lt "$triggers" ]; do
		i=$((i + 1))
		echo l >/proc/sysrq-trigger
		# Pace: wait until every target has printed its backtrace for this trigger.
		for c in $others; do
			t=0
			eval "want=\$((bt0_$c + i))"
			while [ "$(bt $c)" -lt "$want" ]; do
				t=$((t + 1))
				if [ $t -gt 300 ]; then
					why "no backtrace from cpu $c 30 s after trigger $i"
					ok=0
					break 3
				fi
				sleep 0.1
			done
		done
	done
	snap b
	detail="triggers=$i sender=cpu0:+$(rise 0 a b)"
	[ "$(rise 0 a b)" -eq 0 ] || { why "the sender's NMI: count rose by $(rise 0 a b)"; ok=0; }
	for c in $others; do
		r=$(rise $c a b)
		eval "n=\$(($(bt $c) - bt0_$c))"
		detail="$detail cpu$c:+$r/bt=$n"
		[ "$r" -eq "$i" ] || { why "cpu $c: NMI: rose by $r for $i triggers"; ok=0; }
		[ "$n" -eq "$i" ] || { why "cpu $c: $n backtraces for $i triggers"; ok=0; }
	done
	u1=$(kcount "$UNKNOWN|$DAZED")
	[ "$u1" -eq "$u0" ] || { why "$((u1 - u0)) unknown-NMI messages during the triggers"; ok=0; }
	if [ $ok = 1 ]; then pass nmi-backtrace "$detail"; else
		dmesg | grep -E 'NMI|sysrq' | tail -n 8 | sed 's/^/linuxtest: dmesg: /'
		fail nmi-backtrace "$detail"
	fi
}

# ---- paced-nmis: the hypervisor sends N NMIs to each other CPU, none may merge -------
check_paced_nmis() {
	[ $hv = 1 ] || { skip paced-nmis "no hypervisor"; return; }
	[ -n "$others" ] || { skip paced-nmis "one CPU: the hypervisor sends to the other CPUs"; return; }
	ok=1
	for c in $others; do eval "i0_$c=\$(injected $c)"; done
	spin_start
	snap a
	res=$(hvnum 2 255 "$nmis") || ok=0
	sleep 1
	snap b
	spin_stop
	nothers=$(echo $others | wc -w)
	want=$((nmis * nothers))
	detail="sent=$nmis/cpu delivered=$res sender=cpu0:+$(rise 0 a b)"
	[ "$res" -eq "$want" ] || { why "the hypervisor delivered $res of $want"; ok=0; }
	[ "$(rise 0 a b)" -eq 0 ] || { why "the sender's NMI: count rose by $(rise 0 a b)"; ok=0; }
	for c in $others; do
		r=$(rise $c a b)
		eval "inj=\$((\$(injected $c) - i0_$c))"
		detail="$detail cpu$c:+$r/injected=+$inj"
		[ "$r" -eq "$nmis" ] || { why "cpu $c: NMI: rose by $r for $nmis paced NMIs"; ok=0; }
		[ "$inj" -eq "$nmis" ] || { why "cpu $c: the hypervisor injected $inj for $nmis"; ok=0; }
	done
	[ "$res" -gt 0 ] && delivered=$((delivered + res))
	if [ $ok = 1 ]; then pass paced-nmis "$detail"; else fail paced-nmis "$detail"; fi
}

# ---- nmi-flood: an unpaced burst; at most K counted, at least what cannot merge ------
check_nmi_flood() {
	[ $hv = 1 ] || { skip nmi-flood "no hypervisor"; return; }
	ok=1
	target=0
	[ -n "$others" ] && target=${others%% *}
	i0=$(injected $target)
	spin_start
	snap a
	res=$(hvnum 3 $target "$flood") || ok=0
	sleep 1
	snap b
	spin_stop
	r=$(rise $target a b)
	inj=$(($(injected $target) - i0))
	least=$((flood < 2 ? flood : 2))
	detail="cpu$target burst=$flood accepted=$res counted=+$r injected=+$inj"
	[ "$r" -le "$flood" ] || { why "Linux counted $r NMIs of a burst of $flood"; ok=0; }
	[ "$r" -ge "$least" ] || { why "Linux counted $r NMIs of a burst of $flood (at least $least must arrive)"; ok=0; }
	[ "$r" -eq "$inj" ] || { why "Linux counted $r, the hypervisor injected $inj"; ok=0; }
	[ "$res" -ge 0 ] && [ "$res" -le "$flood" ] || { why "the hypervisor accepted $res of $flood"; ok=0; }
	[ "$r" -gt 0 ] && delivered=$((delivered + r))
	if [ $ok = 1 ]; then pass nmi-flood "$detail"; else fail nmi-flood "$detail"; fi
}

# ---- stop-the-world: rounds are invisible to Linux; its clock goes on --------------
check_stop_the_world() {
	[ $hv = 1 ] || { skip stop-the-world "no hypervisor"; return; }
	ok=1
	detail="rounds=$rounds"
	u0=$(kcount "$UNKNOWN|$DAZED|$TROUBLE")
	for flush in 0 1; do
		spin_start
		snap a
		up0=$(uptime_s)
		d0=$(date +%s)
		res=$(hvnum 4 "$rounds" $flush) || ok=0
		up1=$(uptime_s)
		snap b
		spin_stop
		sleep 1
		up2=$(uptime_s)
		d2=$(date +%s)
		detail="$detail flush=$flush:books=$res,uptime=$up0..$up1..$up2"
		[ "$res" = 0 ] || { why "flush=$flush: the hypervisor's books do not balance ($res)"; ok=0; }
		for c in $cpus; do
			[ "$(rise $c a b)" -eq 0 ] || { why "flush=$flush: cpu $c NMI: rose by $(rise $c a b)"; ok=0; }
		done
		ge "$up1" "$up0" || { why "flush=$flush: uptime went back: $up0 -> $up1"; ok=0; }
		ge "$up2" "$(awk -v a="$up1" 'BEGIN { print a + 0.5 }')" ||
			{ why "flush=$flush: uptime $up1 -> $up2 over 'sleep 1'"; ok=0; }
		[ "$d2" -ge "$d0" ] || { why "flush=$flush: date went back: $d0 -> $d2"; ok=0; }
	done
	u1=$(kcount "$UNKNOWN|$DAZED|$TROUBLE")
	[ "$u1" -eq "$u0" ] || {
		why "the kernel complained during the rounds:"
		dmesg | grep -E "$UNKNOWN|$DAZED|$TROUBLE" | tail -n $((u1 - u0)) | sed 's/^/linuxtest: dmesg: /'
		ok=0
	}
	if [ $ok = 1 ]; then pass stop-the-world "$detail"; else fail stop-the-world "$detail"; fi
}

# ---- nothing-spurious: no NMI Linux cannot explain beyond the hypervisor's own -----
check_nothing_spurious() {
	u=$(kcount "$UNKNOWN")
	d=$(kcount "$DAZED")
	detail="unknown=$u dazed=$d allowed=$delivered"
	if [ "$u" -le "$delivered" ] && [ "$d" -le "$delivered" ]; then
		pass nothing-spurious "$detail"
	else
		dmesg | grep -E "$UNKNOWN|$DAZED" | tail -n 4 | sed 's/^/linuxtest: dmesg: /'
		fail nothing-spurious "$detail"
	fi
}

# ---- nmi-accounting: Linux counted every NMI the hypervisor injected, no more ------
check_nmi_accounting() {
	[ $hv = 1 ] || { skip nmi-accounting "no hypervisor"; return; }
	ok=1
	detail=
	snap a
	for c in $cpus; do
		eval "n=\$a_$c"
		inj=$(injected $c)
		detail="$detail cpu$c:linux=$n/injected=$inj"
		[ "$n" -eq "$inj" ] || { why "cpu $c: Linux counted $n NMIs, the hypervisor injected $inj"; ok=0; }
	done
	if [ $ok = 1 ]; then pass nmi-accounting "${detail# }"; else fail nmi-accounting "${detail# }"; fi
}

# ---- isolation, part 1: the hypervisor's memory is not the guest's RAM --------------
hv_lo=0 hv_hi=0
check_memory_map() {
	[ $hv = 1 ] || {
		skip memory-map "no hypervisor"
		skip isolation "no hypervisor"
		return
	}
	lo=$(hvnum 7) && hi=$(hvnum 8) || { fail memory-map "HV_RANGE unanswered"; return; }
	hv_lo=$((lo << 12)) hv_hi=$((hi << 12))
	detail=$(printf 'hypervisor=0x%x-0x%x' $hv_lo $hv_hi)
	[ $hv_hi -gt $hv_lo ] || { fail memory-map "$detail: empty range"; return; }
	overlap=
	for range in $(grep -E '^[0-9a-f]+-[0-9a-f]+ : System RAM$' /proc/iomem | cut -d' ' -f1); do
		s=$((0x${range%-*})) e=$((0x${range#*-} + 1))
		[ $s -lt $hv_hi ] && [ $e -gt $hv_lo ] && overlap="$overlap $range"
	done
	if [ -z "$overlap" ]; then pass memory-map "$detail not in the guest's System RAM"; else
		fail memory-map "$detail overlaps System RAM:$overlap"
	fi
}

wanted nmi-backtrace && check_nmi_backtrace
wanted paced-nmis && check_paced_nmis
wanted nmi-flood && check_nmi_flood
wanted stop-the-world && check_stop_the_world
wanted nothing-spurious && check_nothing_spurious
wanted nmi-accounting && check_nmi_accounting
wanted isolation && check_memory_map
echo "LINUX: DONE passed=$passed failed=$failed skipped=$skipped"

# ---- the end ----------------------------------------------------------------------
if [ $hv = 1 ]; then
	$hvcmd 5 $((passed > 255 ? 255 : passed)) $((failed > 255 ? 255 : failed)) >/dev/null
	if wanted isolation && [ $hv_hi -gt $hv_lo ]; then
		# isolation, part 2: the hypervisor must stop the guest at this write (EPT)
		# and judge; coming back from it is the failure.
		addr=$(printf '0x%x' $hv_lo)
		echo "LINUX: ISOLATION writing $addr through /dev/mem: the hypervisor must stop the guest"
		err=$(devmem "$addr" 32 0x4c494e58 2>&1)
		echo "LINUX: ISOLATION survived: the write to $addr came back${err:+ ($err)}"
	fi
fi
[ "$after" = shell ] && shell
poweroff -f
