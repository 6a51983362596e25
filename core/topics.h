/* topics.h — routes for the topic taxonomy. */
#ifndef SP_CORE_TOPICS_H
#define SP_CORE_TOPICS_H

struct sp_core;

int sp_topics_register(struct sp_core *core);

#endif
