#!/usr/bin/env bash
# A real Apache Kafka 4.1 broker (KRaft, single node) on loopback, from Maven
# Central jars. Usage: kafka.sh up DIR [PORT]   |   kafka.sh down DIR
# kafka.sh restart DIR [PORT] starts a broker stopped by down again on its
# data (topics, offsets), as a broker restart; up starts from nothing.
# The jars are fetched once with Maven and cached in ~/.cache/ember.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
verb=${1:?usage: kafka.sh up|restart|down DIR [PORT]}
work=${2:?usage: kafka.sh up|down DIR [PORT]}
port=${3:-19092}
libs=${EMBER_KAFKA_LIBS:-$HOME/.cache/ember/kafka-4.1.1/libs}

case "$verb" in
up|restart)
  mkdir -p "$work"; work=$(cd "$work" && pwd)
  if [ ! -f "$libs/.complete" ]; then
    echo "testenv: fetching Kafka 4.1.1 jars with Maven into $libs" >&2
    rm -rf "$libs"
    (cd "$here/kafka" && mvn -B -q dependency:copy-dependencies -DoutputDirectory="$libs" -DincludeScope=runtime) \
      || { echo "testenv: FAILED to fetch the Kafka jars from Maven Central" >&2; exit 1; }
    touch "$libs/.complete"
  fi
  jvm=(-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:ActiveProcessorCount=2
       -Djava.awt.headless=true -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" -Dkafka.logs.dir="$work/logs")
  if [ "$verb" = up ]; then
    rm -rf "$work/data" "$work/logs"; mkdir -p "$work/data" "$work/logs"
    sed -e "s|DATA_DIR|$work/data|" -e "s|CONTROLLER_PORT|$((port + 1))|g" -e "s|KAFKA_PORT|$port|g" \
      "$here/kafka/server.properties" > "$work/server.properties"
    cid=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)
    java "${jvm[@]}" -cp "$libs/*" kafka.tools.StorageTool format --standalone -t "$cid" -c "$work/server.properties" >/dev/null
  fi
  : > "$work/kafka.out"   # "Kafka Server started" must come from this start
  nohup java "${jvm[@]}" -cp "$libs/*" kafka.Kafka "$work/server.properties" >"$work/kafka.out" 2>&1 &
  echo $! > "$work/kafka.pid"
  for _ in $(seq 1 120); do
    if grep -q "Kafka Server started" "$work/kafka.out" 2>/dev/null; then
      echo "testenv: kafka up on 127.0.0.1:$port (pid $(cat "$work/kafka.pid"))" >&2; exit 0
    fi
    if ! kill -0 "$(cat "$work/kafka.pid")" 2>/dev/null; then break; fi
    sleep 0.5
  done
  echo "testenv: FAILED to start Kafka on 127.0.0.1:$port; last log lines:" >&2
  tail -n 30 "$work/kafka.out" >&2 || true
  exit 1 ;;
down)
  if [ -f "$work/kafka.pid" ]; then
    pid=$(cat "$work/kafka.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$work/kafka.pid"
  fi ;;
*) echo "usage: kafka.sh up|restart|down DIR [PORT]" >&2; exit 2 ;;
esac
