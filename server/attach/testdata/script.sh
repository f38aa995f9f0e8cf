# A bash script full of what breaks agents that take signals or threads from their host:
# subshells, pipelines, command substitution, traps, background jobs, wait, exit statuses.
set -u
trap 'echo "trap USR1"' USR1
trap 'echo "exit trap"' EXIT
f() { echo "f $1 $(echo "$1" | tr a-z A-Z)"; }
for i in one two three; do
	(f "$i"; echo "sub $i") | sort -r | tr -d x
done
x=$(echo hello | cat | wc -c)
echo "x=$x"
sum=0
for n in $(seq 1 50); do sum=$((sum + n)); done
echo "sum=$sum"
sleep 0.01 &
p=$!
wait "$p"
echo "bg status $?"
( exit 3 ) || echo "subshell status $?"
{ echo a; echo b; echo c; } | while read -r l; do echo "line $l"; done
for j in 1 2 3 4; do ( echo "job $j" >/dev/null; exit "$j" ) & done
st=0
for j in 1 2 3 4; do wait -n; st=$((st + $?)); done
echo "jobs sum $st"
kill -USR1 $$
echo "after kill"
out=$(bash -c 'echo nested $((6 * 7)); exit 5'); echo "$out status $?"
coproc cat; echo ping >&"${COPROC[1]}"; read -r pong <&"${COPROC[0]}"; echo "coproc $pong"
exec {COPROC[1]}>&-; wait
echo done
