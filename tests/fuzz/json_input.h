/* Parses fuzz input as JSON text with json-c, as the request layer does with a response body. */
#ifndef KN_FUZZ_JSON_INPUT_H
#define KN_FUZZ_JSON_INPUT_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

/* The parsed value (caller puts it), or NULL when the text is not JSON. */
static inline json_object *fuzz_json(const uint8_t *data, size_t size)
{
    if (size > (size_t)INT32_MAX)
        return NULL;
    json_tokener *tok = json_tokener_new();
    if (!tok)
        abort();
    json_object *o = json_tokener_parse_ex(tok, (const char *)data, (int)size);
    if (json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

#endif
