package bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.time.LocalDateTime;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.HexFormat;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/** The fraud rules of benchmarks/fraud_logic.py (the reference), in Java, rule for rule. */
final class FraudRules {
    static final Map<String, Double> RATES = Map.of("EUR", 1.0, "USD", 0.92, "GBP", 1.17, "CHF", 1.05, "JPY", 0.0062);
    static final Set<String> CHANNELS = Set.of("card_present", "online", "atm");
    static final long DEDUPE_HORIZON_MS = 24L * 3600 * 1000;
    static final long VELOCITY_WINDOW_MS = 60_000;
    private static final Pattern DIGITS = Pattern.compile("\\d+");
    private static final Pattern NUMBER = Pattern.compile("\\d+(\\.\\d+)?");
    private static final byte[] EMAIL_KEY = "bench-mask-key".getBytes(StandardCharsets.US_ASCII);

    private FraudRules() {}

    /** A record that goes to the DLQ; the message is the reason. */
    static final class Invalid extends Exception {
        Invalid(String reason) {
            super(reason, null, false, false);
        }
    }

    static String customerId(JsonNode value) throws Invalid {
        if (value == null || value.isNull() || value.isBoolean() || value.isMissingNode()) {
            throw new Invalid("customer_id: missing or not an identifier");
        }
        Matcher m = DIGITS.matcher(value.isTextual() ? value.asText() : value.toString());
        StringBuilder digits = new StringBuilder();
        while (m.find()) {
            digits.append(m.group());
        }
        if (digits.length() == 0) {
            throw new Invalid("customer_id: no digits");
        }
        return String.format("C-%06d", new java.math.BigInteger(digits.toString()));
    }

    static long epochMs(JsonNode value) throws Invalid {
        if (value == null || value.isBoolean() || value.isNull()) {
            throw new Invalid("ts: not a time");
        }
        if (value.isNumber()) {
            return seconds(value.asDouble(), value.isIntegralNumber() ? value.asLong() : null);
        }
        if (value.isTextual()) {
            String text = value.asText().strip();
            if (NUMBER.matcher(text).matches()) {
                return seconds(Double.parseDouble(text), null);
            }
            String iso = text.replace("Z", "+00:00");
            try {
                return OffsetDateTime.parse(iso).toInstant().toEpochMilli();
            } catch (DateTimeParseException e) {
                try {
                    LocalDateTime.parse(iso);
                } catch (DateTimeParseException e2) {
                    throw new Invalid("ts: unparseable");
                }
                throw new Invalid("ts: ISO-8601 without an offset");
            }
        }
        throw new Invalid("ts: not a time");
    }

    /** Epoch seconds below 1e11, else epoch ms (an integer is kept exact). */
    private static long seconds(double value, Long integral) {
        if (value < 100_000_000_000d) {
            return (long) (value * 1000);
        }
        return integral != null ? integral : (long) value;
    }

    static String requiredString(JsonNode txn, String name) throws Invalid {
        JsonNode v = txn.get(name);
        if (v == null || !v.isTextual() || v.asText().isEmpty()) {
            throw new Invalid(name + ": missing or not a string");
        }
        return v.asText();
    }

    /** Rule a (and the checks of rule b): the canonical transaction, or Invalid. */
    static ObjectNode harmonise(JsonNode txn) throws Invalid {
        if (!(txn instanceof ObjectNode in)) {
            throw new Invalid("not an object");
        }
        ObjectNode out = in.deepCopy();
        for (String name : new String[] {"txn_id", "account_id", "merchant_id"}) {
            requiredString(txn, name);
        }
        out.put("customer_id", customerId(txn.get("customer_id")));
        JsonNode currency = txn.get("currency");
        if (currency == null || !currency.isTextual() || !RATES.containsKey(currency.asText().toUpperCase())) {
            throw new Invalid("currency: unknown");
        }
        out.put("currency", currency.asText().toUpperCase());
        JsonNode amountNode = txn.get("amount");
        double amount = Double.NaN;
        if (amountNode != null && amountNode.isNumber()) {
            amount = amountNode.asDouble();
        } else if (amountNode != null && amountNode.isTextual()) {
            try {
                amount = Double.parseDouble(amountNode.asText().strip());
            } catch (NumberFormatException e) {
                amount = Double.NaN;
            }
        }
        if (Double.isNaN(amount) || amount <= 0) {
            throw new Invalid("amount: not a positive number");
        }
        out.put("amount", amount);
        JsonNode channel = txn.get("channel");
        if (channel == null || !channel.isTextual() || !CHANNELS.contains(channel.asText())) {
            throw new Invalid("channel: unknown");
        }
        JsonNode country = txn.get("country");
        if (country == null || !country.isTextual() || country.asText().strip().length() != 2) {
            throw new Invalid("country: not ISO 3166-1 alpha-2");
        }
        out.put("country", country.asText().strip().toUpperCase());
        out.put("ts", epochMs(txn.get("ts")));
        return out;
    }

    /** Rule f on an account's kept event times: the new list (ts appended) and the 60 s count. */
    static long[] velocity(long[] window, long ts, int[] count) {
        long low = ts - VELOCITY_WINDOW_MS;
        long[] kept = new long[window.length + 1];
        int n = 0;
        for (long t : window) {
            if (t > low - VELOCITY_WINDOW_MS) {
                kept[n++] = t;
            }
        }
        kept[n++] = ts;
        int c = 0;
        for (int i = 0; i < n; i++) {
            if (kept[i] > low && kept[i] <= ts) {
                c++;
            }
        }
        count[0] = c;
        return java.util.Arrays.copyOf(kept, n);
    }

    /** Rules d (the join), e, g: the enriched, scored record (email hashed, name left out). */
    static ObjectNode score(ObjectNode txn, JsonNode profile) {
        ObjectNode out = txn;
        double amountEur = Math.round(txn.get("amount").asDouble() * RATES.get(txn.get("currency").asText()) * 100) / 100.0;
        out.put("amount_eur", amountEur);
        String home = profile.path("home_country").asText("").toUpperCase();
        out.put("home_country", home);
        out.set("risk_tier", profile.get("risk_tier"));
        out.set("avg_amount", profile.get("avg_amount"));
        out.put("email", hmac(profile.path("email").asText("")));
        double total = 0;
        ArrayNode reasons = Json.MAPPER.createArrayNode();
        if (amountEur > 5 * profile.path("avg_amount").asDouble(0)) {
            total += 0.4;
            reasons.add("amount_over_5x_average");
        }
        if (txn.path("velocity_60s").asLong(0) > 5) {
            total += 0.3;
            reasons.add("velocity_over_5_per_minute");
        }
        if (!txn.get("country").asText().equals(home)) {
            total += 0.2;
            reasons.add("foreign_country");
        }
        String tier = profile.path("risk_tier").asText("");
        if (tier.equals("high")) {
            total += 0.2;
            reasons.add("high_risk_customer");
        } else if (tier.equals("medium")) {
            total += 0.1;
            reasons.add("medium_risk_customer");
        }
        if (txn.get("channel").asText().equals("online") && amountEur > 1000) {
            total += 0.1;
            reasons.add("large_online_amount");
        }
        out.put("score", Math.round(Math.min(1.0, total) * 100) / 100.0);
        out.set("reasons", reasons);
        return out;
    }

    private static final ThreadLocal<Mac> MAC = ThreadLocal.withInitial(() -> {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(EMAIL_KEY, "HmacSHA256"));
            return mac;
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    });

    static String hmac(String email) {
        return HexFormat.of().formatHex(MAC.get().doFinal(email.getBytes(StandardCharsets.UTF_8)));
    }

    /** Rule h: alert, review or approved (enriched always). */
    static String route(JsonNode scored) {
        double s = scored.get("score").asDouble();
        return s >= 0.8 ? "alert" : s >= 0.5 ? "review" : "approved";
    }

    static ObjectNode alert(JsonNode scored) {
        boolean critical = scored.get("score").asDouble() >= 0.95 || scored.get("amount_eur").asDouble() >= 10_000;
        ObjectNode out = Json.MAPPER.createObjectNode();
        for (String f : new String[] {"txn_id", "account_id", "customer_id", "amount_eur", "score", "reasons"}) {
            out.set(f, scored.get(f));
        }
        out.put("severity", critical ? "critical" : "high");
        out.set("ts", scored.get("ts"));
        return out;
    }

    static ObjectNode freeze(JsonNode scored) {
        ObjectNode out = Json.MAPPER.createObjectNode();
        out.set("account_id", scored.get("account_id"));
        out.put("action", "freeze");
        out.set("txn_id", scored.get("txn_id"));
        out.set("ts", scored.get("ts"));
        return out;
    }
}
