-- validate_json: every draft-04 keyword family, the shape of its errors,
-- and invalid schemas refused with the schema path of the mistake (22023).

-- type: a name or a list; "number" admits integers; 1.0 is an integer
SELECT validate_json('"x"', '{"type": "string"}');
SELECT validate_json('7', '{"type": "string"}');
SELECT validate_json('null', '{"type": ["string", "null"]}');
SELECT validate_json('[]', '{"type": ["string", "null"]}');
SELECT d, validate_json(d, '{"type": "integer"}') ->> 'valid' AS integer
  FROM unnest(ARRAY['1', '1.0', '-3', '1.5', '1e2', '"1"']::jsonb[]) d;

-- enum and uniqueItems use JSON equality: 1 equals 1.0, key order is irrelevant
SELECT validate_json('1.0', '{"enum": [1, "a", {"b": [2]}]}') ->> 'valid' AS one_point_zero,
       validate_json('{"b": [2.00]}', '{"enum": [1, "a", {"b": [2]}]}') ->> 'valid' AS object,
       validate_json('"b"', '{"enum": [1, "a", {"b": [2]}]}') AS not_in_enum;
SELECT validate_json('[1, 1.0]', '{"uniqueItems": true}');
SELECT validate_json('[{"a": 1, "b": 2}, {"b": 2, "a": 1}]', '{"uniqueItems": true}') ->> 'valid' AS objects,
       validate_json('[1, true, "1", [1]]', '{"uniqueItems": true}') ->> 'valid' AS distinct_types;

-- numbers are compared exactly (numeric)
SELECT d, validate_json(d, '{"multipleOf": 0.01}') ->> 'valid' AS cents
  FROM unnest(ARRAY['0.07', '7.99', '1.001', '100', '0.1e-1']::jsonb[]) d;
SELECT validate_json('10', '{"maximum": 10}') ->> 'valid' AS max_inclusive,
       validate_json('10', '{"maximum": 10, "exclusiveMaximum": true}') AS max_exclusive,
       validate_json('0', '{"minimum": 0, "exclusiveMinimum": true}') AS min_exclusive,
       validate_json('-0.0001', '{"minimum": 0}') AS min;
SELECT validate_json('12345678901234567890123456789.000000000000000000001',
                     '{"maximum": 12345678901234567890123456789}') ->> 'valid' AS big_number;

-- strings: lengths count characters, pattern is not anchored, formats
SELECT validate_json('"ééé"', '{"maxLength": 3, "minLength": 3}') ->> 'valid' AS three_chars,
       validate_json('"éééé"', '{"maxLength": 3}') AS four_chars,
       validate_json('""', '{"minLength": 1}') AS empty;
SELECT validate_json('"GBP"', '{"pattern": "^[A-Z]{3}$"}') ->> 'valid' AS currency,
       validate_json('"xx GBP xx"', '{"pattern": "[A-Z]{3}"}') ->> 'valid' AS unanchored,
       validate_json('"gbp"', '{"pattern": "^[A-Z]{3}$"}') AS lower_case,
       validate_json('"2024-03-04"', '{"pattern": "^\\d{4}-\\d{2}-\\d{2}$"}') ->> 'valid' AS digits;
SELECT f, d, validate_json(to_jsonb(d), jsonb_build_object('format', f)) ->> 'valid' AS valid
  FROM (VALUES ('uuid', '2d5a8218-3c6a-436e-b724-8dff12e7010d'),
               ('uuid', '2D5A8218-3C6A-436E-B724-8DFF12E7010D'),
               ('uuid', '2d5a82183c6a436eb7248dff12e7010d'),
               ('uuid', '{2d5a8218-3c6a-436e-b724-8dff12e7010d}'),
               ('date-time', '2024-03-04T12:00:00Z'),
               ('date-time', '2024-03-04t12:00:00.123+05:30'),
               ('date-time', '2024-02-30T12:00:00Z'),
               ('date-time', '2024-03-04 12:00:00Z'),
               ('email', 'joe.bloggs@example.com'),
               ('email', 'joe..bloggs@example.com'),
               ('email', 'no-at-sign'),
               ('ipv4', '192.168.0.1'),
               ('ipv4', '256.1.1.1'),
               ('ipv4', '01.2.3.4'),
               ('ipv6', '::1'),
               ('ipv6', '2001:db8::8a2e:370:7334'),
               ('ipv6', '12345::'),
               ('hostname', 'api.example.com'),
               ('hostname', '-bad.example.com'),
               ('hostname', 'under_score.example.com'),
               ('uri', 'https://example.com/a?b=c#d'),
               ('uri', 'urn:isbn:0451450523'),
               ('uri', '/relative/path'),
               ('uri', 'http://exa mple.com'),
               ('unknown-format', 'anything')) t(f, d);

-- arrays
SELECT validate_json('[1, "x", 3]', '{"items": {"type": "integer"}}');
SELECT validate_json('[1, "x", true]', '{"items": [{"type": "integer"}, {"type": "string"}], "additionalItems": false}');
SELECT validate_json('[1, "x", true]', '{"items": [{"type": "integer"}], "additionalItems": {"type": "string"}}');
SELECT validate_json('[1, 2, 3]', '{"maxItems": 2}') AS max_items,
       validate_json('[]', '{"minItems": 1}') AS min_items;

-- objects
SELECT validate_json('{"a": 1, "b": 2, "c": 3}', '{"maxProperties": 2}') AS max_properties,
       validate_json('{}', '{"minProperties": 1}') AS min_properties;
SELECT validate_json('{"a": 1}', '{"required": ["a", "b", "odd name"]}');
SELECT validate_json('{"amount": -1, "currency": "GBP", "x_1": 5, "extra": true, "odd key": 1}',
                     '{"properties": {"amount": {"minimum": 0}, "currency": {"enum": ["EUR"]}},
                       "patternProperties": {"^x_": {"type": "string"}},
                       "additionalProperties": false}');
SELECT validate_json('{"a": 1, "b": "x"}', '{"properties": {"a": {}}, "additionalProperties": {"type": "integer"}}');
SELECT validate_json('{"card": "4111"}', '{"dependencies": {"card": ["billing", "cvc"]}}');
SELECT validate_json('{"card": "4111"}', '{"dependencies": {"card": {"required": ["billing"]}}}');

-- combinations
SELECT validate_json('5', '{"allOf": [{"minimum": 6}, {"multipleOf": 2}]}');
SELECT validate_json('"x"', '{"anyOf": [{"type": "integer"}, {"minLength": 2}]}');
SELECT validate_json('3', '{"oneOf": [{"type": "integer"}, {"minimum": 2}]}') AS both,
       validate_json('1', '{"oneOf": [{"type": "integer"}, {"minimum": 2}]}') ->> 'valid' AS one;
SELECT validate_json('"x"', '{"not": {"type": "string"}}');

-- $ref: definitions, recursion, id-based resolution, the bundled meta-schema
SELECT validate_json('{"amount": "x"}',
                     '{"properties": {"amount": {"$ref": "#/definitions/money"}},
                       "definitions": {"money": {"type": "number", "multipleOf": 0.01}}}');
SELECT validate_json('{"value": 1, "children": [{"value": 2, "children": [{"value": "deep"}]}]}',
                     '{"type": "object", "properties": {"value": {"type": "integer"},
                       "children": {"type": "array", "items": {"$ref": "#"}}}}');
SELECT validate_json('{"n": "x"}',
                     '{"id": "http://example.com/root.json", "properties": {"n": {"$ref": "item.json"}},
                       "definitions": {"i": {"id": "item.json", "type": "integer"}}}');
SELECT validate_json('{"n": 1}',
                     '{"properties": {"n": {"$ref": "#num"}}, "definitions": {"i": {"id": "#num", "type": "string"}}}');
SELECT validate_json('{"minLength": -1}', '{"$ref": "http://json-schema.org/draft-04/schema#"}') ->> 'valid' AS bad_schema_per_meta,
       validate_json('{"type": "string", "minLength": 1}', '{"$ref": "http://json-schema.org/draft-04/schema#"}') ->> 'valid' AS good_schema_per_meta;
SELECT validate_json('{"a": 1}', '{"properties": {"a": {"$ref": "#/definitions/s", "type": "integer"}}, "definitions": {"s": {"type": "string"}}}') ->> 'valid'
       AS ref_overrides_siblings;

-- scalars, arrays and nested paths
SELECT validate_json('[{"x": [0, {"y": 1}]}]', '{"items": {"properties": {"x": {"items": {"properties": {"y": {"type": "string"}}}}}}}');
SELECT validate_json('{"a b": {"c": 1}}', '{"properties": {"a b": {"properties": {"c": {"type": "string"}}}}}');
SELECT validate_json('42', '{}') AS empty_schema_accepts_anything;

-- a deeply recursive document against a recursive schema
SELECT validate_json((repeat('[', 1000) || repeat(']', 1000))::jsonb,
                     '{"type": "array", "items": {"$ref": "#"}}') ->> 'valid' AS deep;

-- invalid schemas: 22023 with the schema path of the mistake
SELECT s AS schema, t.*
  FROM unnest(ARRAY[
         '{"type": 12}',
         '{"properties": {"amount": {"type": "money"}}}',
         '{"properties": {"amount": {"type": ["number", "number"]}}}',
         '{"minLength": -1}',
         '{"maxItems": 1.5}',
         '{"multipleOf": 0}',
         '{"exclusiveMaximum": true}',
         '{"pattern": "(unclosed"}',
         '{"patternProperties": {"[": {}}}',
         '{"enum": []}',
         '{"required": []}',
         '{"required": ["a", "a"]}',
         '{"items": [{}, 3]}',
         '{"allOf": []}',
         '{"not": "string"}',
         '{"additionalProperties": 1}',
         '{"dependencies": {"a": 1}}',
         '{"$ref": "#/definitions/missing"}',
         '{"$ref": "http://example.com/remote.json"}',
         '{"definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#/definitions/a"}}, "$ref": "#/definitions/a"}',
         '{"allOf": [{"$ref": "#"}]}',
         '{"properties": {"a": {"anyOf": [{"type": "integer"}, {"$ref": "#/properties/a"}]}}}',
         '{"definitions": {"x": {"type": "strin"}}}',
         '[]']) s,
       LATERAL test.try(format('SELECT validate_json(%L, %L)', '{}', s)) t;
