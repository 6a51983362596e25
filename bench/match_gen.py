#!/usr/bin/env python3
"""match_gen.py — a seeded generator of clusters for the matchmaking benchmark.

    bench/match_gen.py --orgs N [--seed S] [--pairs P] --out DIR

Writes, in DIR, files for PostgreSQL COPY (tab-separated, \\N for NULL) into the core's
tables, and the ground truth:

  topics.tsv      sp_topics (id, slug, label, parent_id): 10 themes -> 80 areas -> 1,000
                  leaf topics (1,090 topics)
  orgs.tsv        sp_organizations (id, name, kind, country, region): N organisations, 20
                  regions in 4 countries, kinds in the proportions of a health cluster
  org_topics.tsv  sp_org_topics (org_id, relation, topic_id, level)
  planted.json    [{"seeker", "partner", "negatives": [...]}]

Organisations offer 3-12 topics, most from one home area, the rest anywhere, and seek
2-6; leaf popularity follows a Zipf law (s = 1, ranks shuffled over the taxonomy), so a
few topics are common and most are rare; the home area is the area of a leaf drawn by
popularity. Planted partner pairs: the seeker's sought topics are drawn from the partner's
offers, 30% of them replaced by a sibling (same area); the partner is of a kind that
complements the seeker's and seeks one or two things the seeker offers. Hard negatives
(two per pair): organisations offering exactly what the seeker seeks (a better topic fit
than the partner's), of the seeker's own kind, seeking nothing the seeker offers.
The same seed gives the same files."""
import argparse
import bisect
import json
import os
import random
import uuid

THEMES, AREAS_PER_THEME, LEAVES = 10, 8, 1000
KINDS = [('sme', 0.58), ('large_enterprise', 0.14), ('hospital', 0.05), ('university', 0.08),
         ('research_centre', 0.06), ('association', 0.05), ('public_body', 0.02),
         ('other', 0.02)]
COUNTRIES = ['NL', 'BE', 'DE', 'FR']
# The kind a planted partner has, for each seeker kind (complementary ones).
PARTNER_KIND = {'sme': ['hospital', 'research_centre', 'university'],
                'large_enterprise': ['sme', 'research_centre'],
                'hospital': ['sme', 'large_enterprise'],
                'university': ['hospital', 'sme'],
                'research_centre': ['sme', 'large_enterprise', 'hospital'],
                'association': ['public_body', 'hospital'],
                'public_body': ['hospital', 'association'],
                'other': ['sme']}


class Weighted:
    """Draws items in proportion to their weights."""

    def __init__(self, items, weights):
        self.items = list(items)
        self.cum = []
        total = 0.0
        for w in weights:
            total += w
            self.cum.append(total)
        self.total = total

    def draw(self, rng):
        return self.items[bisect.bisect_left(self.cum, rng.random() * self.total)]


def new_id(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate(n, seed, npairs):
    rng = random.Random(seed)
    topics = []  # (id, slug, label, parent_id)
    areas = []   # (area id, [leaf ids])
    leaf_area = {}
    leaf = 0
    for t in range(THEMES):
        tid = new_id(rng)
        topics.append((tid, 'bench-theme-%02d' % t, 'Theme %d' % t, None))
        for a in range(AREAS_PER_THEME):
            aid = new_id(rng)
            ai = t * AREAS_PER_THEME + a
            topics.append((aid, 'bench-area-%02d' % ai, 'Area %d' % ai, tid))
            count = LEAVES // (THEMES * AREAS_PER_THEME) + (1 if ai % 2 else 0)
            leaves = []
            for _ in range(count):
                lid = new_id(rng)
                topics.append((lid, 'bench-topic-%04d' % leaf, 'Topic %d' % leaf, aid))
                leaves.append(lid)
                leaf_area[lid] = len(areas)
                leaf += 1
            areas.append((aid, leaves))
    # Zipf popularity of the leaves: weight 1/rank, ranks in a random order. An
    # organisation's home area is the area of a leaf drawn by popularity; within it,
    # leaves are drawn by popularity too.
    all_leaves = [lid for _, ls in areas for lid in ls]
    ranks = list(range(1, len(all_leaves) + 1))
    rng.shuffle(ranks)
    pop = {lid: 1.0 / r for lid, r in zip(all_leaves, ranks)}
    global_z = Weighted(all_leaves, [pop[x] for x in all_leaves])
    in_area = [Weighted(ls, [pop[x] for x in ls]) for _, ls in areas]
    kinds = [k for k, _ in KINDS]
    kind_w = [w for _, w in KINDS]
    regions = ['Region %02d' % i for i in range(20)]

    orgs = []       # (id, name, kind, country, region)
    profiles = {}   # id -> {'offers': {topic: level}, 'seeks': {topic: level}}

    def add_org(kind=None):
        oid = new_id(rng)
        kind = kind or rng.choices(kinds, kind_w)[0]
        r = rng.randrange(len(regions))
        orgs.append((oid, 'Org %06d' % len(orgs), kind, COUNTRIES[r % len(COUNTRIES)],
                     regions[r]))
        home = leaf_area[global_z.draw(rng)]
        offers = {}
        for _ in range(rng.randint(3, 12)):
            t = in_area[home].draw(rng) if rng.random() < 0.7 else global_z.draw(rng)
            offers[t] = rng.randint(1, 3)
        seeks = {}
        for _ in range(rng.randint(2, 6)):
            t = global_z.draw(rng)
            if t not in offers:
                seeks[t] = rng.randint(1, 3)
        profiles[oid] = {'offers': offers, 'seeks': seeks}
        return oid

    npairs = min(npairs, n // 20)
    planted = []
    for _ in range(npairs):
        seeker = add_org()
        skind = orgs[-1][2]
        partner = add_org(rng.choice(PARTNER_KIND[skind]))
        p_off = list(profiles[partner]['offers'])
        rng.shuffle(p_off)
        sought = {}
        for t in p_off[:rng.randint(3, 5)]:
            if rng.random() < 0.3:  # a sibling instead of the exact topic
                sibs = [x for x in areas[leaf_area[t]][1] if x != t]
                t = rng.choice(sibs)
            sought[t] = rng.choice((2, 3))
        for t in list(sought):
            profiles[seeker]['offers'].pop(t, None)
        profiles[seeker]['seeks'] = sought
        s_off = list(profiles[seeker]['offers'])
        for t in rng.sample(s_off, min(len(s_off), rng.randint(1, 2))):
            if t not in profiles[partner]['offers']:
                profiles[partner]['seeks'][t] = rng.randint(2, 3)
        negatives = []
        for _ in range(2):
            neg = add_org(skind)
            offers = {t: 3 for t in sought}
            for t in list(profiles[neg]['offers'])[:2]:
                offers.setdefault(t, profiles[neg]['offers'][t])
            profiles[neg]['offers'] = offers
            profiles[neg]['seeks'] = {t: l for t, l in profiles[neg]['seeks'].items()
                                      if t not in offers and t not in s_off}
            negatives.append(neg)
        planted.append({'seeker': seeker, 'partner': partner, 'negatives': negatives})
    while len(orgs) < n:
        add_org()
    rng.shuffle(orgs)  # planted organisations are not grouped at the start
    return topics, orgs, profiles, planted


def tsv(v):
    if v is None:
        return '\\N'
    return str(v).replace('\\', '\\\\').replace('\t', ' ').replace('\n', ' ')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--orgs', type=int, required=True)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--pairs', type=int, default=500)
    ap.add_argument('--out', required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    topics, orgs, profiles, planted = generate(a.orgs, a.seed, a.pairs)
    with open(os.path.join(a.out, 'topics.tsv'), 'w', encoding='utf-8') as f:
        for row in topics:
            f.write('\t'.join(tsv(v) for v in row) + '\n')
    with open(os.path.join(a.out, 'orgs.tsv'), 'w', encoding='utf-8') as f:
        for row in orgs:
            f.write('\t'.join(tsv(v) for v in row) + '\n')
    rows = 0
    with open(os.path.join(a.out, 'org_topics.tsv'), 'w', encoding='utf-8') as f:
        for oid, _, _, _, _ in orgs:
            for rel in ('offers', 'seeks'):
                for t, lvl in profiles[oid][rel].items():
                    f.write('%s\t%s\t%s\t%d\n' % (oid, rel, t, lvl))
                    rows += 1
    with open(os.path.join(a.out, 'planted.json'), 'w', encoding='utf-8') as f:
        json.dump(planted, f)
    print(json.dumps({'topics': len(topics), 'organizations': len(orgs), 'profile_rows': rows,
                      'planted_pairs': len(planted)}))


if __name__ == '__main__':
    main()
