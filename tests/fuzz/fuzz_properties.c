/*
 * .properties files: kn_conf_load_properties on any content (read from an
 * in-memory file), which runs each line through kn_conf_set (aliases, unit
 * conversion, every value type). Invariants: a load that fails leaves the
 * conf as it was; after a load that succeeds, every property's value reads
 * back and sets again unchanged.
 */
#include "fuzz.h"
#include "memfile.h"

#include "conf.h"

#define NAME_OF(id, name, type, def, min, max, doc) name,
static const char *const props[] = {KN_CONF_PROPS(NAME_OF)};
#undef NAME_OF
#define NPROPS (sizeof(props) / sizeof(props[0]))

static fuzz_memfile_t file;
static char defaults[NPROPS][512];

static void get(const kn_conf_t *conf, const char *name, char *out, size_t size)
{
    size_t n = size;
    FUZZ_CHECK(kn_conf_get(conf, name, out, &n) == KN_ERR_OK);
    FUZZ_CHECK(n > 0 && n <= size); /* values here are short; a longer one is truncated */
    FUZZ_CHECK(memchr(out, '\0', size) != NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_memfile_open(&file, "conf.properties");
    kn_conf_t *conf = kn_conf_new();
    FUZZ_CHECK(conf);
    for (size_t i = 0; i < NPROPS; i++)
        get(conf, props[i], defaults[i], sizeof(defaults[i]));
    kn_conf_destroy(conf);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_memfile_set(&file, data, size);
    kn_conf_t *conf = kn_conf_new();
    FUZZ_CHECK(conf);
    char errstr[512];
    errstr[0] = '\0';
    kn_err_t e = kn_conf_load_properties(conf, file.path, errstr, sizeof(errstr));
    FUZZ_CHECK(memchr(errstr, '\0', sizeof(errstr)) != NULL);
    /* Values may be long (up to the file size): read them into a buffer that fits. */
    size_t cap = size + 512;
    char *value = malloc(cap);
    FUZZ_CHECK(value);
    if (e != KN_ERR_OK) {
        FUZZ_CHECK(errstr[0] != '\0');
        for (size_t i = 0; i < NPROPS; i++) {
            get(conf, props[i], value, cap);
            FUZZ_CHECK(strcmp(value, defaults[i]) == 0);
        }
    } else {
        kn_conf_t *again = kn_conf_new();
        FUZZ_CHECK(again);
        for (size_t i = 0; i < NPROPS; i++) {
            get(conf, props[i], value, cap);
            e = kn_conf_set(again, props[i], value, errstr, sizeof(errstr));
            if (e != KN_ERR_OK)
                fprintf(stderr, "%s=%s does not set again: %s\n", props[i], value, errstr);
            FUZZ_CHECK(e == KN_ERR_OK);
        }
        kn_conf_destroy(again);
    }
    free(value);
    kn_conf_destroy(conf);
    return 0;
}
