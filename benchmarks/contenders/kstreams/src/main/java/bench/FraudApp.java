package bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.TimestampedKeyValueStore;
import org.apache.kafka.streams.state.ValueAndTimestamp;
import org.apache.kafka.streams.state.WindowStore;
import org.apache.kafka.streams.state.WindowStoreIterator;

/**
 * The fraud logic (benchmarks/fraud_logic.py, topologies/fraud_detection.yaml without its model
 * step): harmonise, dedupe by txn_id within 24 h (a window store: its segments expire the old ids),
 * velocity in 60 s per account (the input is keyed by account_id), enrichment from a GlobalKTable
 * of the customer profiles, amount_eur, the rule score, routing to enriched + alerts/actions,
 * review or approved; an invalid record or an unknown customer goes to the DLQ with its reason.
 */
final class FraudApp {
    static final String SEEN = "seen-txn-ids";
    static final String VELOCITY = "velocity";
    static final String CUSTOMERS = "customers";

    private FraudApp() {}

    /** A record and the topic it goes to (one sink routes them all). */
    record Routed(String topic, JsonNode value) {}

    static Topology topology() {
        StreamsBuilder builder = new StreamsBuilder();
        builder.globalTable(Env.get("BENCH_CUSTOMERS_TOPIC"), Consumed.with(Serdes.String(), Json.serde()),
            Materialized.as(CUSTOMERS));
        builder.addStateStore(Stores.windowStoreBuilder(
            Stores.persistentWindowStore(SEEN, Duration.ofMillis(2 * FraudRules.DEDUPE_HORIZON_MS),
                Duration.ofMillis(FraudRules.DEDUPE_HORIZON_MS), false),
            Serdes.String(), Serdes.Long()));
        builder.addStateStore(Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(VELOCITY), Serdes.String(), Serdes.ByteArray()));
        Serde<JsonNode> json = Json.serde();
        Topics topics = new Topics();
        builder.stream(Env.get("BENCH_INPUT_TOPIC"), Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
            .process(() -> new Scorer(topics), SEEN, VELOCITY)
            .to((key, value, ctx) -> value.topic(),
                Produced.with(Serdes.ByteArray(), Serdes.serdeFrom(
                    (topic, routed) -> json.serializer().serialize(topic, routed.value()),
                    (topic, bytes) -> { throw new UnsupportedOperationException(); })));
        return builder.build();
    }

    static final class Topics {
        final String enriched = Env.get("BENCH_ENRICHED_TOPIC");
        final String alerts = Env.get("BENCH_ALERTS_TOPIC");
        final String actions = Env.get("BENCH_ACTIONS_TOPIC");
        final String review = Env.get("BENCH_REVIEW_TOPIC");
        final String approved = Env.get("BENCH_APPROVED_TOPIC");
        final String dlq = Env.get("BENCH_DLQ_TOPIC");
    }

    static final class Scorer implements Processor<byte[], byte[], byte[], Routed> {
        private final Topics topics;
        private ProcessorContext<byte[], Routed> context;
        private WindowStore<String, Long> seen;
        private KeyValueStore<String, byte[]> velocity;
        private TimestampedKeyValueStore<String, JsonNode> customers;

        Scorer(Topics topics) {
            this.topics = topics;
        }

        @Override
        public void init(ProcessorContext<byte[], Routed> context) {
            this.context = context;
            this.seen = context.getStateStore(SEEN);
            this.velocity = context.getStateStore(VELOCITY);
            this.customers = context.getStateStore(CUSTOMERS);
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            ObjectNode txn;
            try {
                if (record.value() == null) {
                    throw new FraudRules.Invalid("not an object");
                }
                txn = FraudRules.harmonise(Json.parse(record.value()));
            } catch (FraudRules.Invalid | IOException e) {
                dlq(record, e instanceof FraudRules.Invalid ? e.getMessage() : "not JSON");
                return;
            }
            String txnId = txn.get("txn_id").asText();
            long ts = txn.get("ts").asLong();
            if (duplicate(txnId, ts)) {
                return;
            }
            seen.put(txnId, ts, ts);
            String account = txn.get("account_id").asText();
            int[] count = new int[1];
            velocity.put(account, pack(FraudRules.velocity(unpack(velocity.get(account)), ts, count)));
            txn.put("velocity_60s", count[0]);
            ValueAndTimestamp<JsonNode> profile = customers.get(txn.get("customer_id").asText());
            if (profile == null || profile.value() == null) {
                dlq(record, "unknown_customer");
                return;
            }
            ObjectNode scored = FraudRules.score(txn, profile.value());
            emit(record, topics.enriched, scored);
            switch (FraudRules.route(scored)) {
                case "alert" -> {
                    emit(record, topics.alerts, FraudRules.alert(scored));
                    emit(record, topics.actions, FraudRules.freeze(scored));
                }
                case "review" -> emit(record, topics.review, scored);
                default -> emit(record, topics.approved, scored);
            }
        }

        /** The id was seen within 24 h of this record's time, before or after it. */
        private boolean duplicate(String txnId, long ts) {
            long horizon = FraudRules.DEDUPE_HORIZON_MS - 1;
            try (WindowStoreIterator<Long> it = seen.fetch(txnId, Instant.ofEpochMilli(Math.max(0, ts - horizon)),
                    Instant.ofEpochMilli(ts + horizon))) {
                return it.hasNext();
            }
        }

        private void emit(Record<byte[], byte[]> in, String topic, JsonNode value) {
            context.forward(new Record<>(in.key(), new Routed(topic, value), in.timestamp()));
        }

        private void dlq(Record<byte[], byte[]> in, String reason) {
            ObjectNode out = Json.MAPPER.createObjectNode();
            out.put("reason", reason);
            out.put("original", in.value() == null ? "" : new String(in.value(), StandardCharsets.UTF_8));
            emit(in, topics.dlq, out);
        }
    }

    static byte[] pack(long[] times) {
        ByteBuffer buf = ByteBuffer.allocate(8 * times.length);
        for (long t : times) {
            buf.putLong(t);
        }
        return buf.array();
    }

    static long[] unpack(byte[] bytes) {
        if (bytes == null) {
            return new long[0];
        }
        ByteBuffer buf = ByteBuffer.wrap(bytes);
        long[] out = new long[bytes.length / 8];
        for (int i = 0; i < out.length; i++) {
            out[i] = buf.getLong();
        }
        return out;
    }
}
