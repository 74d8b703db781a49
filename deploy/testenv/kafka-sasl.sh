#!/usr/bin/env bash
# A real Apache Kafka 4.1 broker whose client listener is SASL_SSL: a CA and
# a broker certificate made here with openssl, SCRAM-SHA-256/512 credentials
# written into the KRaft metadata at format time (kafka-storage --add-scram),
# PLAIN users from the listener's JAAS line. For the security tests
# (cmd/ember/security_test.go); same jars and cache as kafka.sh.
#
# Usage: KAFKA_SASL_USER=ember KAFKA_SASL_PASSWORD=... kafka-sasl.sh up DIR PORT
#        kafka-sasl.sh down DIR
# Listeners: SASL_SSL on 127.0.0.1:PORT (the one clients use), the controller
# on PORT+1 and a PLAINTEXT inter-broker listener on PORT+2, both loopback.
# Clients trust DIR/ca.pem. The password must be [A-Za-z0-9_-]+.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
verb=${1:?usage: kafka-sasl.sh up|down DIR [PORT]}
work=${2:?usage: kafka-sasl.sh up|down DIR [PORT]}
port=${3:-39192}
libs=${EMBER_KAFKA_LIBS:-$HOME/.cache/ember/kafka-4.1.1/libs}

case "$verb" in
up)
  user=${KAFKA_SASL_USER:-ember}
  password=${KAFKA_SASL_PASSWORD:?set KAFKA_SASL_PASSWORD}
  if ! [[ "$password" =~ ^[A-Za-z0-9_-]+$ && "$user" =~ ^[A-Za-z0-9_-]+$ ]]; then
    echo "testenv: KAFKA_SASL_USER/PASSWORD must be [A-Za-z0-9_-]+" >&2; exit 2
  fi
  mkdir -p "$work"; work=$(cd "$work" && pwd)
  if [ ! -f "$libs/.complete" ]; then
    echo "testenv: fetching Kafka 4.1.1 jars with Maven into $libs" >&2
    rm -rf "$libs"
    (cd "$here/kafka" && mvn -B -q dependency:copy-dependencies -DoutputDirectory="$libs" -DincludeScope=runtime) \
      || { echo "testenv: FAILED to fetch the Kafka jars from Maven Central" >&2; exit 1; }
    touch "$libs/.complete"
  fi
  rm -rf "$work/data" "$work/logs"; mkdir -p "$work/data" "$work/logs"
  # A throwaway CA and a broker certificate for 127.0.0.1 and localhost.
  storepass=$(openssl rand -hex 16)
  (
    cd "$work"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ember-test-ca" \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout broker.key -out broker.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile broker.ext -out broker.pem 2>/dev/null
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
      -passout "pass:$storepass" -out broker.p12
    chmod 600 ca.key broker.key broker.p12
  )
  jaas_scram='org.apache.kafka.common.security.scram.ScramLoginModule required;'
  jaas_plain="org.apache.kafka.common.security.plain.PlainLoginModule required user_$user=\"$password\";"
  cat > "$work/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$((port + 1))
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1)),INTERNAL://127.0.0.1:$((port + 2))
advertised.listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1)),INTERNAL://127.0.0.1:$((port + 2))
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$jaas_scram
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$jaas_scram
listener.name.sasl_ssl.plain.sasl.jaas.config=$jaas_plain
ssl.keystore.type=PKCS12
ssl.keystore.location=$work/broker.p12
ssl.keystore.password=$storepass
ssl.key.password=$storepass
ssl.client.auth=none
log.dirs=$work/data
num.partitions=8
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.segment.bytes=67108864
EOF
  chmod 600 "$work/server.properties"
  jvm=(-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:ActiveProcessorCount=2
       -Djava.awt.headless=true -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" -Dkafka.logs.dir="$work/logs")
  cid=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)
  java "${jvm[@]}" -cp "$libs/*" kafka.tools.StorageTool format --standalone -t "$cid" -c "$work/server.properties" \
    --add-scram "SCRAM-SHA-256=[name=$user,password=$password]" \
    --add-scram "SCRAM-SHA-512=[name=$user,password=$password]" >/dev/null
  nohup java "${jvm[@]}" -cp "$libs/*" kafka.Kafka "$work/server.properties" >"$work/kafka.out" 2>&1 &
  echo $! > "$work/kafka.pid"
  for _ in $(seq 1 120); do
    if grep -q "Kafka Server started" "$work/kafka.out" 2>/dev/null; then
      echo "testenv: kafka SASL_SSL up on 127.0.0.1:$port (pid $(cat "$work/kafka.pid"))" >&2; exit 0
    fi
    if ! kill -0 "$(cat "$work/kafka.pid")" 2>/dev/null; then break; fi
    sleep 0.5
  done
  echo "testenv: FAILED to start Kafka (SASL_SSL) on 127.0.0.1:$port; last log lines:" >&2
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
*) echo "usage: kafka-sasl.sh up|down DIR [PORT]" >&2; exit 2 ;;
esac
