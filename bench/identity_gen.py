#!/usr/bin/env python3
"""identity_gen.py — a seeded generator of organisations for bench/identity_bench.

    bench/identity_gen.py --orgs N [--seed S] --out DIR

Writes, in DIR, files for PostgreSQL COPY (tab-separated, \\N for NULL) into the core's
tables, and a summary:

  topics.tsv      sp_topics (id, slug, label, parent_id): 10 themes -> 90 areas -> 900
                  leaf topics (1,000 topics)
  orgs.tsv        sp_organizations (id, name, kind, country, region, website,
                  description): N organisations, kinds in the proportions of a health
                  cluster, 15 countries with 5 regions each, names drawn from word lists
                  (not unique, in no particular order), descriptions of 20-60 words
  org_topics.tsv  sp_org_topics (org_id, relation, topic_id, level)
  summary.json    counts, and the slugs the benchmark queries: the most popular leaf
                  (most organisations offering or seeking it), the rarest leaf that has
                  any, and the largest theme (a slug whose descendants are 99 topics)

Leaf popularity follows a Zipf law (weight 1/rank, s = 1, ranks shuffled over the
taxonomy). Each organisation has a home theme (the theme of a leaf drawn by popularity);
it offers 3-12 distinct topics, 70% drawn by popularity within its home theme and the rest
anywhere, and seeks 2-6 distinct topics drawn anywhere; 5% of the entries name the area
above the drawn leaf instead of the leaf. Levels are 1-3. The same seed gives the same
files."""
import argparse
import bisect
import itertools
import json
import os
import random
import uuid

THEMES = ['digital-health', 'medical-devices', 'biotech', 'pharma', 'diagnostics',
          'nutrition', 'healthy-ageing', 'rehabilitation', 'health-data', 'care-logistics']
AREAS_PER_THEME, LEAVES_PER_AREA = 9, 10
KINDS = [('sme', 0.58), ('large_enterprise', 0.14), ('hospital', 0.05), ('university', 0.08),
         ('research_centre', 0.06), ('association', 0.05), ('public_body', 0.02),
         ('other', 0.02)]
COUNTRIES = [('NL', 20), ('BE', 12), ('DE', 18), ('FR', 14), ('ES', 6), ('IT', 6), ('DK', 4),
             ('SE', 4), ('FI', 3), ('AT', 3), ('PL', 3), ('PT', 2), ('IE', 2), ('CZ', 2),
             ('LU', 1)]
NAME_A = ['Nova', 'Medi', 'Bio', 'Cura', 'Vita', 'Thera', 'Gen', 'Neuro', 'Cardio', 'Opti',
          'Sana', 'Helix', 'Axo', 'Lumen', 'Orto', 'Pulse', 'Quant', 'Ceres', 'Vero', 'Zen',
          'Astra', 'Delta', 'Kine', 'Myo', 'Osteo', 'Derma', 'Immu', 'Onco',
          'Pneu', 'Renal']
NAME_B = ['tech', 'care', 'med', 'gen', 'logic', 'sense', 'vision', 'path', 'lab', 'works',
          'point', 'line', 'scope', 'form', 'core', 'bridge', 'nova', 'wave', 'flow', 'cell']
NAME_C = ['', '', ' Solutions', ' Systems', ' Labs', ' Health', ' Therapeutics', ' Diagnostics',
          ' Institute', ' Foundation', ' Group', ' Partners', ' Clinic', ' Research',
          ' Innovations', ' Network']
NAME_LEGAL = ['', '', '', ' BV', ' GmbH', ' SA', ' SAS', ' NV', ' AB', ' Oy', ' SL', ' Srl']
WORDS = ('care patient clinical data platform sensor device therapy trial imaging cell gene '
         'protein assay screening software monitoring remote hospital home ageing frailty '
         'nutrition microbiome diagnostics biomarker wearable rehabilitation robotics '
         'logistics supply chain regulatory quality validation algorithm model prediction '
         'prevention chronic disease cardiology oncology neurology orthopaedics surgery '
         'research development production manufacturing scale partner network consortium '
         'pilot study evidence outcome value cost efficient secure privacy interoperable '
         'standard open service training education community region innovation').split()


def new_id(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate(n, seed):
    rng = random.Random(seed)
    topics = []       # (id, slug, label, parent_id)
    leaves = []       # leaf ids, in taxonomy order
    leaf_area = {}    # leaf id -> area id
    leaf_theme = {}   # leaf id -> theme index
    theme_ids = []
    for ti, theme in enumerate(THEMES):
        tid = new_id(rng)
        theme_ids.append(tid)
        topics.append((tid, theme, theme.replace('-', ' ').capitalize(), None))
        for a in range(1, AREAS_PER_THEME + 1):
            aid = new_id(rng)
            topics.append((aid, '%s-%d' % (theme, a), '%s, area %d' % (
                theme.replace('-', ' ').capitalize(), a), tid))
            for leaf in range(1, LEAVES_PER_AREA + 1):
                lid = new_id(rng)
                topics.append((lid, '%s-%d-%d' % (theme, a, leaf), '%s, area %d, topic %d' % (
                    theme.replace('-', ' ').capitalize(), a, leaf), aid))
                leaves.append(lid)
                leaf_area[lid] = aid
                leaf_theme[lid] = ti
    # Zipf popularity of the leaves: weight 1/rank, ranks in a random order.
    ranks = list(range(1, len(leaves) + 1))
    rng.shuffle(ranks)
    pop = {lid: 1.0 / r for lid, r in zip(leaves, ranks)}
    glob_cum = list(itertools.accumulate(pop[x] for x in leaves))
    by_theme = [[x for x in leaves if leaf_theme[x] == ti] for ti in range(len(THEMES))]
    theme_cum = [list(itertools.accumulate(pop[x] for x in ls)) for ls in by_theme]

    def draw(pool, cum):
        return pool[bisect.bisect_left(cum, rng.random() * cum[-1])]

    def entry(leaf):  # 5% of the entries name the area above the leaf
        return leaf_area[leaf] if rng.random() < 0.05 else leaf

    kinds = [k for k, _ in KINDS]
    kind_cum = list(itertools.accumulate(w for _, w in KINDS))
    countries = [c for c, _ in COUNTRIES]
    country_cum = list(itertools.accumulate(w for _, w in COUNTRIES))
    orgs = []
    profile = []  # (org_id, relation, topic_id, level)
    for i in range(n):
        oid = new_id(rng)
        kind = kinds[bisect.bisect_left(kind_cum, rng.random() * kind_cum[-1])]
        country = countries[bisect.bisect_left(country_cum, rng.random() * country_cum[-1])]
        name = '%s%s%s%s' % (rng.choice(NAME_A), rng.choice(NAME_B), rng.choice(NAME_C),
                             rng.choice(NAME_LEGAL))
        if rng.random() < 0.5:
            name += ' %d' % rng.randrange(1, 1000)
        slug = name.lower().replace(' ', '-')
        desc = ' '.join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
        orgs.append((oid, name, kind, country, '%s-%d' % (country, rng.randint(1, 5)),
                     'https://www.%s.example' % slug, desc.capitalize() + '.'))
        home = leaf_theme[draw(leaves, glob_cum)]
        offers = {}
        want = rng.randint(3, 12)
        while len(offers) < want:
            leaf = (draw(by_theme[home], theme_cum[home]) if rng.random() < 0.7
                    else draw(leaves, glob_cum))
            offers.setdefault(entry(leaf), rng.randint(1, 3))
        seeks = {}
        want = rng.randint(2, 6)
        while len(seeks) < want:
            seeks.setdefault(entry(draw(leaves, glob_cum)), rng.randint(1, 3))
        for rel, d in (('offers', offers), ('seeks', seeks)):
            for t, lvl in d.items():
                profile.append((oid, rel, t, lvl))
    return topics, orgs, profile, leaves, theme_ids


def tsv(v):
    if v is None:
        return '\\N'
    return str(v).replace('\\', '\\\\').replace('\t', ' ').replace('\n', ' ')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--orgs', type=int, required=True)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--out', required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    topics, orgs, profile, leaves, theme_ids = generate(a.orgs, a.seed)
    for name, rows in (('topics.tsv', topics), ('orgs.tsv', orgs),
                       ('org_topics.tsv', profile)):
        with open(os.path.join(a.out, name), 'w', encoding='utf-8') as f:
            f.writelines('\t'.join(tsv(v) for v in row) + '\n' for row in rows)
    # Organisations per topic (offers or seeks), and per theme subtree.
    slug = {t[0]: t[1] for t in topics}
    parent = {t[0]: t[3] for t in topics}
    per_topic = {}
    per_theme = {}
    for oid, _, tid, _ in profile:
        per_topic.setdefault(tid, set()).add(oid)
        root = tid
        while parent[root]:
            root = parent[root]
        per_theme.setdefault(root, set()).add(oid)
    counted = [(len(per_topic.get(x, ())), slug[x]) for x in leaves]
    popular = max(counted)
    rare = min(c for c in counted if c[0] > 0)
    theme = max((len(per_theme.get(t, ())), slug[t]) for t in theme_ids)
    summary = {
        'seed': a.seed, 'topics': len(topics), 'organizations': len(orgs),
        'profile_rows': len(profile),
        'offers': sum(1 for r in profile if r[1] == 'offers'),
        'seeks': sum(1 for r in profile if r[1] == 'seeks'),
        'popular': {'slug': popular[1], 'orgs': popular[0]},
        'rare': {'slug': rare[1], 'orgs': rare[0]},
        'theme': {'slug': theme[1], 'orgs': theme[0]},
    }
    with open(os.path.join(a.out, 'summary.json'), 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))


if __name__ == '__main__':
    main()
