/* fuzz_config.c - libFuzzer target: the configuration loader
 * (common/config.c, libyaml underneath) on arbitrary files. */
#include "../../common/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/tidemark-fuzz-config-%d.yml", (int)getpid());
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return 0;
    fwrite(data, 1, size, fp);
    fclose(fp);
    struct config *cfg = NULL;
    struct tm_error err;
    if (config_load(path, &cfg, &err) == 0)
        config_free(cfg);
    return 0;
}
