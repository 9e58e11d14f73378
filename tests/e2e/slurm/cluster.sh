#!/usr/bin/env bash
# A one-node SLURM cluster for the tests, from Debian's slurm-wlm and munge, run as root.
#
#   bash tests/slurm/cluster.sh start DIR   # munged, slurmctld, slurmd; prints SLURM_CONF=...
#   bash tests/slurm/cluster.sh stop DIR    # stops exactly the daemons that start wrote down
#
# Everything lives in DIR: the munge key and socket, slurm.conf (SLURM_CONF points the
# commands at it), spool and state folders, logs, and the daemons' pid files. Nothing under
# /etc is touched and no system daemon is used. One partition, "debug", holds this machine
# with all its cores, so several jobs run side by side; jobs run as root. Without accounting
# (no slurmdbd), job states come from squeue and the job's own files, not sacct.
set -euo pipefail
cmd=${1:?usage: cluster.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: cluster.sh start|stop DIR}")

stop() {
    # the cluster's own jobs first (SLURM_CONF: this cluster only), then the daemons, then any
    # job step left behind (they run scripts from DIR's spool)
    if [[ -s $dir/slurmctld.pid ]] && command -v scancel >/dev/null; then
        export SLURM_CONF=$dir/slurm.conf
        scancel -u "$(id -un)" 2>/dev/null || true
        for _ in $(seq 100); do
            [[ -z $(squeue -h 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
    for name in slurmd slurmctld munged; do
        pidfile="$dir/$name.pid"
        if [[ -s $pidfile ]]; then
            pid=$(cat "$pidfile")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
    pkill -f "$dir/" 2>/dev/null || true
}

if [[ $cmd == stop ]]; then
    stop
    exit 0
fi
[[ $cmd == start ]] || { echo "usage: cluster.sh start|stop DIR" >&2; exit 2; }
for tool in munged mungekey slurmctld slurmd sbatch; do
    command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install slurm-wlm munge" >&2; exit 3; }
done
[[ $(id -u) == 0 ]] || { echo "the test cluster runs its daemons as root" >&2; exit 3; }

mkdir -p "$dir"/{munge,munge-run,spool,state,log}
host=$(hostname -s)
cpus=$(nproc)
# ports: free ones, so that a cluster already on this machine is left alone
read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')

# munge: a key of our own (munged refuses keys others can read), its socket in a folder
# every user can reach (munged refuses it otherwise)
chown munge:munge "$dir/munge" "$dir/munge-run" && chmod 700 "$dir/munge" && chmod 755 "$dir/munge-run"
[[ -f $dir/munge/munge.key ]] || mungekey --create --keyfile="$dir/munge/munge.key" --force
chown munge:munge "$dir/munge/munge.key" && chmod 400 "$dir/munge/munge.key"
runuser -u munge -- munged --key-file="$dir/munge/munge.key" \
    --socket="$dir/munge-run/munge.sock" --pid-file="$dir/munge-run/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
cp "$dir/munge-run/munged.pid" "$dir/munged.pid"

cat > "$dir/slurm.conf" <<CONF
ClusterName=pixdatest
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge-run/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=600
InactiveLimit=0
KillWait=60
NodeName=$host CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF

export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$dir/slurm.conf"
slurmd -f "$dir/slurm.conf" -N "$host"
for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^idle'; then
        echo "SLURM_CONF=$dir/slurm.conf"
        exit 0
    fi
    sleep 0.2
done
echo "the test cluster did not come up; logs in $dir/log" >&2
stop
exit 1
