# A small cluster of "hosts" on this machine, for the multi-host tests (sourced by
# scripts/cluster_test.sh and scripts/fault_matrix.sh; needs root, iproute2 and OpenMPI).
#
# Each host is a network namespace with its own loopback and one interface, eth0, with an address
# on a private test subnet (10.77.0.0/24 unless CLUSTER_SUBNET says otherwise); the interfaces are
# joined by veth pairs to a bridge that lives in a further namespace (the "switch"), so cutting a
# host's cable is `ip -n <switch> link set p<i> down`. Each host also gets its own host name (a UTS
# namespace per command), so OpenMPI's per-host session folders do not collide.
#
# OpenMPI starts its daemons on the other hosts with an rsh agent that runs the command inside
# that host's namespace with `ip netns exec` and a clean environment, as ssh would; mpirun itself
# runs on host 0. Ranks talk over TCP on the test subnet only (btl tcp,self; oob and btl
# restricted to the subnet).
#
#   cluster_check         fails with a clear message unless namespaces can be made here
#   cluster_up N          creates hosts 0..N-1 (sets CLUSTER_HOSTS, the comma-separated addresses)
#   cluster_mpirun ARGS   mpirun on host 0 across all hosts, one slot each, with the settings of cluster_mca
#   cluster_outside       gives this machine's own namespace (the "login node") a link to the switch,
#                         with address .254 and a hostfile of the hosts (one slot each) in $CLUSTER_DIR/hosts
#   cluster_mpirun_outside ARGS  mpirun from the login node: the hostfile and the rsh agent, with the
#                         interfaces restricted to the test subnet; no other settings (the caller adds them)
#   cluster_cut I         takes host I's link down at the switch; cluster_restore I brings it back
#   cluster_cut_at_host I takes host I's own interface down (the cut seen from the host's side);
#                         cluster_restore_at_host I brings it back
#   cluster_pids          PIDs of every process in the cluster's namespaces
#   cluster_down          kills what still runs in the namespaces and deletes them (idempotent)

CLUSTER_SUBNET=${CLUSTER_SUBNET:-10.77.0}
CLUSTER_TCP_RETRIES2=${CLUSTER_TCP_RETRIES2:-5}
CLUSTER_ID=vq$$
CLUSTER_SWITCH=$CLUSTER_ID-sw
CLUSTER_SIZE=0
CLUSTER_HOSTS=
CLUSTER_DIR=

# OpenMPI settings for a job across the namespaces (see docs/reliability.md):
# - btl tcp,self and the subnet for btl and oob: ranks use the test network, as on separate hosts;
# - oob_tcp_keepalive_*: mpirun and its daemons notice a daemon whose host went silent after
#   5 + 2 x 3 = 11 s instead of OpenMPI's default 300 + 20 x 9 = 480 s; the MPI traffic itself
#   (btl tcp) has no keepalive setting in OpenMPI 4.1, which is what `vqvae train --watchdog` is for.
# Keepalive only probes idle connections: one with data in flight to a vanished host waits for the
# kernel's retransmission limit, net.ipv4.tcp_retries2 (15, about 15 minutes, by default); each
# host namespace sets it to CLUSTER_TCP_RETRIES2 (default 5, about 13 s).
cluster_mca() {
    echo --mca btl tcp,self \
        --mca btl_tcp_if_include "$CLUSTER_SUBNET.0/24" --mca oob_tcp_if_include "$CLUSTER_SUBNET.0/24" \
        --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2 --mca oob_tcp_keepalive_probes 3
}

cluster_fail() {
    echo "error: $*" >&2
    exit 2
}

# Fails with a clear message unless this shell can build the cluster: root, the tools, and a
# network namespace that can really be created.
cluster_check() {
    local tool answer
    [ "$(id -u)" -eq 0 ] || cluster_fail "the cluster tests need root (network namespaces, veth pairs); run them as root"
    for tool in ip unshare sysctl mpirun; do
        command -v $tool >/dev/null || cluster_fail "'$tool' is not installed (scripts/install_dependencies.sh installs iproute2 and OpenMPI)"
    done
    answer=$(ip netns add "$CLUSTER_ID-probe" 2>&1) ||
        cluster_fail "cannot create a network namespace ($answer); the cluster tests need root with CAP_SYS_ADMIN and CAP_NET_ADMIN"
    ip netns del "$CLUSTER_ID-probe" || true
}

cluster_up() {
    local count=$1 i
    cluster_check
    CLUSTER_DIR=$(mktemp -d /tmp/vqvae-cluster.XXXXXX)
    ip netns add "$CLUSTER_SWITCH" || cluster_fail "cannot create network namespace $CLUSTER_SWITCH"
    CLUSTER_SIZE=$count
    ip -n "$CLUSTER_SWITCH" link set lo up
    ip -n "$CLUSTER_SWITCH" link add br0 type bridge || cluster_fail "cannot create a bridge in $CLUSTER_SWITCH"
    ip -n "$CLUSTER_SWITCH" link set br0 up
    local hosts=() map=""
    for ((i = 0; i < count; i++)); do
        local ns=$CLUSTER_ID-h$i address=$CLUSTER_SUBNET.$((i + 1))
        ip netns add "$ns" || cluster_fail "cannot create network namespace $ns"
        ip link add eth0 netns "$ns" type veth peer name "p$i" netns "$CLUSTER_SWITCH" ||
            cluster_fail "cannot create a veth pair for $ns"
        ip -n "$CLUSTER_SWITCH" link set "p$i" master br0
        ip -n "$CLUSTER_SWITCH" link set "p$i" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$address/24" dev eth0
        ip -n "$ns" link set eth0 up
        # TCP gives up on a connection with unacknowledged data after ~13 s instead of ~15 min
        # (per host; see cluster_mca and docs/reliability.md).
        ip netns exec "$ns" sysctl -qw net.ipv4.tcp_retries2="$CLUSTER_TCP_RETRIES2"
        hosts+=("$address")
        map+="    $address) ns=$ns name=host$i ;;"$'\n'
    done
    CLUSTER_HOSTS=$(IFS=,; echo "${hosts[*]}")
    # The rsh agent: `agent HOST COMMAND...` runs COMMAND on HOST, like `ssh HOST COMMAND...`.
    cat >"$CLUSTER_DIR/agent" <<EOF
#!/bin/sh
host=\$1; shift
case \$host in
$map    *) echo "rsh agent: unknown host \$host" >&2; exit 255 ;;
esac
exec ip netns exec "\$ns" unshare --uts env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root \\
    /bin/sh -c 'hostname "\$0" && exec /bin/sh -c "\$1"' "\$name" "\$*"
EOF
    chmod +x "$CLUSTER_DIR/agent"
    # Host 0 must reach every other host before anything starts.
    for ((i = 1; i < count; i++)); do cluster_wait_reachable "$i"; done
}

# Waits until host 0 reaches host I over TCP (a refused connection is an answer).
cluster_wait_reachable() {
    local address=$CLUSTER_SUBNET.$(($1 + 1)) tries=0 answer
    while :; do
        answer=$(ip netns exec "$CLUSTER_ID-h0" timeout 1 bash -c "exec 3<>/dev/tcp/$address/9" 2>&1) && return 0
        grep -q refused <<<"$answer" && return 0
        tries=$((tries + 1))
        [ $tries -lt 50 ] || cluster_fail "host 0 cannot reach $address on the test subnet"
        sleep 0.1
    done
}

cluster_mpirun() {
    ip netns exec "$CLUSTER_ID-h0" unshare --uts /bin/sh -c 'hostname host0 && exec "$@"' sh \
        mpirun --host "$CLUSTER_HOSTS" -np "$CLUSTER_SIZE" --bind-to none --mca plm_rsh_agent "$CLUSTER_DIR/agent" \
        $(cluster_mca) "$@"
}

cluster_outside() {
    ip link add "$CLUSTER_ID-out" type veth peer name pout netns "$CLUSTER_SWITCH" ||
        cluster_fail "cannot create a veth pair from this machine to the switch"
    ip -n "$CLUSTER_SWITCH" link set pout master br0
    ip -n "$CLUSTER_SWITCH" link set pout up
    ip addr add "$CLUSTER_SUBNET.254/24" dev "$CLUSTER_ID-out"
    ip link set "$CLUSTER_ID-out" up
    tr ',' '\n' <<<"$CLUSTER_HOSTS" | sed 's/$/ slots=1/' >"$CLUSTER_DIR/hosts"
}

cluster_mpirun_outside() {
    mpirun -np "$CLUSTER_SIZE" --hostfile "$CLUSTER_DIR/hosts" --mca plm_rsh_agent "$CLUSTER_DIR/agent" \
        --mca btl tcp,self --mca btl_tcp_if_include "$CLUSTER_SUBNET.0/24" --mca oob_tcp_if_include "$CLUSTER_SUBNET.0/24" "$@"
}

cluster_cut() { ip -n "$CLUSTER_SWITCH" link set "p$1" down; }
cluster_cut_at_host() { ip -n "$CLUSTER_ID-h$1" link set eth0 down; }
cluster_restore_at_host() { ip -n "$CLUSTER_ID-h$1" link set eth0 up && cluster_wait_reachable "$1"; }
cluster_restore() { ip -n "$CLUSTER_SWITCH" link set "p$1" up && cluster_wait_reachable "$1"; }

cluster_pids() {
    local i
    for ((i = 0; i < CLUSTER_SIZE; i++)); do ip netns pids "$CLUSTER_ID-h$i" 2>/dev/null; done
}

cluster_down() {  # safe under `set -e` and when nothing was made
    local i pid
    for pid in $(cluster_pids); do kill -9 "$pid" 2>/dev/null || true; done
    for ((i = 0; i < CLUSTER_SIZE; i++)); do ip netns del "$CLUSTER_ID-h$i" 2>/dev/null || true; done
    ip netns del "$CLUSTER_SWITCH" 2>/dev/null || true
    ip link del "$CLUSTER_ID-out" 2>/dev/null || true
    CLUSTER_SIZE=0
    if [ -n "$CLUSTER_DIR" ]; then rm -rf "$CLUSTER_DIR"; fi
    CLUSTER_DIR=
    return 0
}
