# Sourced by gpu8.sh … gpu11.sh after they set BUDGET's default: unpacks the carried build, and
# defines the stage helpers. Logs go to /tmp/logs, tarred into $OUT/logs.tgz after each stage.
#   st MSG     a stage line with the time and the seconds since the start
#   tl N       a timeout of N seconds, or what is left of BUDGET (minus 5), whichever is less
#   rc NAME C  records exit code C of NAME and tars the logs
#   ts         prefixes each line of stdin with the time
START=$(date +%s)
mkdir -p build-gpu && tar xzf .shared/pack.tgz -C build-gpu
b=build-gpu/gpubin
L=/tmp/logs; mkdir -p $L
export NCCL_NVLS_ENABLE=0
mpi=(mpirun --allow-run-as-root --oversubscribe -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH -np 2)
st() { echo "== $(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s $*" | tee -a $L/stages.log; }
pk() { tar czf $OUT/logs.tgz -C /tmp logs; }
tl() { local left=$(( BUDGET - ($(date +%s) - START) - 5 )); [ $left -lt $1 ] && echo $(( left > 1 ? left : 1 )) || echo $1; }
rc() { echo "$1 rc=$2" | tee -a $L/stages.log; pk; }
ts() { while IFS= read -r l; do echo "$(date -u +%H:%M:%S.%N | cut -c1-12) $l"; done; }
