// matplotlib charts through sandbox.process.codeRun of @daytonaio/sdk, one test per chart type.
//
// SDK 0.218.0's parseChart is the identity function: `artifacts.charts` is the daemon's JSON as
// axios parsed it, so a TypeScript user sees the snake_case keys (`x_label`, `first_quartile`),
// bar values as strings, missing text left out (`undefined`, as the SDK's types and Daytona have
// it; never `null`), and whatever else the daemon sends (a pie wedge's `autopct`, a composite
// sub-chart's own `elements`, ticks and scales), although the SDK's types do not declare those.
// The line chart is tested in code.test.mjs.
//
// Tick positions of linear axes are matplotlib's choice: only their shape is checked here;
// categorical ticks are checked value by value.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { ChartType } from '@daytonaio/sdk';

import { binaryExists, isPngBase64, setCurrentTest, setup, teardown } from './helpers.mjs';

/** The chart's keys apart from the PNG (each test lists exactly what it expects). */
function withoutPng(chart) {
  const { png, ...rest } = chart;
  return rest;
}

/** `chart` has these values at these keys (other keys are not looked at). */
function assertFields(chart, expected) {
  const actual = Object.fromEntries(Object.keys(expected).map((key) => [key, chart[key]]));
  assert.deepEqual(actual, expected);
}

/** No value anywhere in `chart` (its elements, their elements) is `null`. */
function assertNoNull(chart, where = 'chart') {
  for (const [key, value] of Object.entries(chart)) {
    assert.notEqual(value, null, `${where}.${key} is null`);
  }
  (chart.elements ?? []).forEach((element, i) => assertNoNull(element, `${where}.elements[${i}]`));
}

/** Ticks as a user would read them: numbers, one label (a string) each. */
function assertTicks(chart, axis) {
  const ticks = chart[`${axis}_ticks`];
  const labels = chart[`${axis}_tick_labels`];
  assert.ok(Array.isArray(ticks) && ticks.length > 0, `${axis}_ticks: ${JSON.stringify(ticks)}`);
  assert.ok(ticks.every(Number.isFinite), `${axis}_ticks: ${JSON.stringify(ticks)}`);
  assert.equal(labels.length, ticks.length);
  assert.ok(labels.every((l) => typeof l === 'string'), `${axis}_tick_labels: ${JSON.stringify(labels)}`);
}

describe('charts (TypeScript SDK)', { skip: !binaryExists() && 'toolboxd binary not built' }, () => {
  let ctx;

  before(async () => {
    ctx = await setup('ts-charts');
  });
  after(async () => {
    await teardown(ctx, 'charts.test.mjs');
  });
  beforeEach((t) => setCurrentTest(t.name));

  /** Run `lines` of Python; every chart shown, each with its PNG checked. */
  async function charts(lines) {
    const res = await ctx.sandbox.process.codeRun(['import matplotlib.pyplot as plt', ...lines].join('\n'));
    assert.equal(res.exitCode, 0, res.result);
    assert.equal(res.result, '', 'chart records stay out of the output');
    for (const chart of res.artifacts.charts) {
      assert.ok(isPngBase64(chart.png), `${chart.type}: png is not a PNG`);
      assertNoNull(chart);
    }
    return res.artifacts.charts;
  }

  async function oneChart(lines) {
    const all = await charts(lines);
    assert.equal(all.length, 1, JSON.stringify(all.map(withoutPng)));
    return all[0];
  }

  test('bar chart: grouped bars keep label, group and value (a string)', async () => {
    const chart = await oneChart([
      'import numpy as np',
      'x = np.arange(2)',
      "plt.bar(x - 0.2, [1, 2.5], 0.4, label='2023')",
      "plt.bar(x + 0.2, [3, 4], 0.4, label='2024')",
      "plt.xticks(x, ['north', 'south'])",
      "plt.title('Sales')",
      "plt.xlabel('region')",
      "plt.ylabel('units')",
      'plt.legend()',
      'plt.show()',
    ]);
    assertFields(chart, {
      type: ChartType.BAR,
      title: 'Sales',
      x_label: 'region',
      y_label: 'units',
      x_scale: 'linear',
      y_scale: 'linear',
      x_ticks: [0, 1],
      x_tick_labels: ['north', 'south'],
      elements: [
        { label: 'north', group: '2023', value: '1' },
        { label: 'south', group: '2023', value: '2.5' },
        { label: 'north', group: '2024', value: '3' },
        { label: 'south', group: '2024', value: '4' },
      ],
    });
    assertTicks(chart, 'y');
  });

  test('horizontal bar chart: categories come from the y axis', async () => {
    const chart = await oneChart([
      "plt.barh(['x', 'y', 'z'], [2, 4, 0.5])",
      "plt.title('Horizontal')",
      "plt.xlabel('amount')",
      "plt.ylabel('item')",
      'plt.show()',
    ]);
    assertFields(chart, {
      type: ChartType.BAR,
      title: 'Horizontal',
      x_label: 'amount',
      y_label: 'item',
      x_scale: 'linear',
      y_scale: 'categorical',
      y_ticks: [0, 1, 2],
      y_tick_labels: ['x', 'y', 'z'],
      // Bars without a label have no group: the key is left out.
      elements: [
        { label: 'x', value: '2' },
        { label: 'y', value: '4' },
        { label: 'z', value: '0.5' },
      ],
    });
    assertTicks(chart, 'x');
  });

  test('pie chart: wedges keep label, angle, radius and autopct', async () => {
    const chart = await oneChart([
      "plt.pie([1, 3], labels=['small', 'big'], autopct='%1.0f%%')",
      "plt.title('Pie')",
      'plt.show()',
    ]);
    // A pie has no axes labels, ticks or scales.
    assert.deepEqual(withoutPng(chart), {
      type: ChartType.PIE,
      title: 'Pie',
      elements: [
        { label: 'small', angle: 90, radius: 1, autopct: '25%' },
        { label: 'big', angle: 270, radius: 1, autopct: '75%' },
      ],
    });
  });

  test('box and whisker chart: quartiles, whiskers and outliers per box', async () => {
    const chart = await oneChart([
      'plt.boxplot([[1, 2, 3, 4, 5, 100], [2, 3, 4, 5, 6]])',
      "plt.xticks([1, 2], ['first', 'second'])",
      "plt.title('Latency')",
      "plt.xlabel('run')",
      "plt.ylabel('ms')",
      'plt.show()',
    ]);
    assertFields(chart, {
      type: ChartType.BOX_AND_WHISKER,
      title: 'Latency',
      x_label: 'run',
      y_label: 'ms',
      x_ticks: [1, 2],
      x_tick_labels: ['first', 'second'],
      // numpy's linear percentiles; the whiskers end at the extreme points within 1.5 IQR.
      elements: [
        { label: 'first', min: 1, first_quartile: 2.25, median: 3.5, third_quartile: 4.75, max: 5, outliers: [100] },
        { label: 'second', min: 2, first_quartile: 3, median: 4, third_quartile: 5, max: 6, outliers: [] },
      ],
    });
    assertTicks(chart, 'y');
  });

  test('line chart over dates: x values are epoch seconds, x_scale "datetime"', async () => {
    const chart = await oneChart([
      'import datetime as dt',
      'days = [dt.datetime(2024, 1, 1) + dt.timedelta(days=i) for i in range(5)]',
      "plt.plot(days, [1, 4, 9, 16, 25], label='squares')",
      "plt.title('Over time')",
      "plt.ylabel('n')",
      'plt.show()',
    ]);
    const start = Date.UTC(2024, 0, 1) / 1000; // 1704067200
    assertFields(chart, {
      type: ChartType.LINE,
      title: 'Over time',
      x_label: undefined,
      y_label: 'n',
      x_scale: 'datetime',
      y_scale: 'linear',
      elements: [{ label: 'squares', points: [0, 1, 2, 3, 4].map((i) => [start + i * 86400, (i + 1) ** 2]) }],
    });
    assertTicks(chart, 'x');
    assert.ok(
      chart.x_ticks.every((t) => t >= start && t <= start + 4 * 86400),
      `x_ticks are epoch seconds inside the data: ${chart.x_ticks}`,
    );
    assert.ok(chart.x_tick_labels.every((l) => l.length > 0));
    assertTicks(chart, 'y');
  });

  test('scatter chart: scatter() and marker-only plot() give point elements', async () => {
    const chart = await oneChart([
      "plt.scatter([1, 2, 3], [3, 1, 2], label='pts')",
      "plt.plot([1.5, 2.5], [-1, 0.25], 'o', label='dots')",
      "plt.title('Scatter')",
      "plt.xlabel('x')",
      "plt.ylabel('y')",
      'plt.show()',
    ]);
    assertFields(chart, {
      type: ChartType.SCATTER,
      title: 'Scatter',
      x_label: 'x',
      y_label: 'y',
      x_scale: 'linear',
      y_scale: 'linear',
      // Lines (the marker-only plot) come before collections (the scatter).
      elements: [
        { label: 'dots', points: [[1.5, -1], [2.5, 0.25]] },
        { label: 'pts', points: [[1, 3], [2, 1], [3, 2]] },
      ],
    });
    assertTicks(chart, 'x');
    assertTicks(chart, 'y');
  });

  test('composite chart: 2x2 subplots keep each sub-chart whole', async () => {
    const chart = await oneChart([
      'fig, axs = plt.subplots(2, 2)',
      "axs[0][0].plot([1, 2], [3, 4], label='l')",
      "axs[0][0].set_title('line')",
      "axs[0][0].set_xlabel('lx')",
      "axs[0][0].set_ylabel('ly')",
      "axs[0][1].bar(['a', 'b'], [1, 2.5], label='g')",
      "axs[0][1].set_title('bar')",
      "axs[0][1].set_xlabel('bx')",
      'axs[1][0].boxplot([[1, 2, 3, 4, 5]])',
      "axs[1][0].set_title('box')",
      "axs[1][0].set_ylabel('by')",
      "axs[1][1].pie([1, 1], labels=['p', 'q'])",
      "axs[1][1].set_title('pie')",
      "fig.suptitle('Four')",
      'plt.show()',
    ]);
    assert.deepEqual(Object.keys(chart).sort(), ['elements', 'png', 'title', 'type']);
    assertFields(chart, { type: ChartType.COMPOSITE_CHART, title: 'Four' });
    assert.equal(chart.elements.length, 4);
    const [line, bar, box, pie] = chart.elements;
    // Sub-charts have no PNG of their own: only the composite has one.
    assert.ok(chart.elements.every((sub) => !('png' in sub)));
    assertFields(line, {
      type: ChartType.LINE,
      title: 'line',
      x_label: 'lx',
      y_label: 'ly',
      x_scale: 'linear',
      y_scale: 'linear',
      elements: [{ label: 'l', points: [[1, 3], [2, 4]] }],
    });
    assertTicks(line, 'x');
    assertFields(bar, {
      type: ChartType.BAR,
      title: 'bar',
      x_label: 'bx',
      y_label: undefined,
      x_scale: 'categorical',
      x_ticks: [0, 1],
      x_tick_labels: ['a', 'b'],
      elements: [
        { label: 'a', group: 'g', value: '1' },
        { label: 'b', group: 'g', value: '2.5' },
      ],
    });
    assertFields(box, {
      type: ChartType.BOX_AND_WHISKER,
      title: 'box',
      x_label: undefined,
      y_label: 'by',
      elements: [{ label: '1', min: 1, first_quartile: 2, median: 3, third_quartile: 4, max: 5, outliers: [] }],
    });
    assert.deepEqual(pie, {
      type: ChartType.PIE,
      title: 'pie',
      elements: [
        { label: 'p', angle: 180, radius: 1 },
        { label: 'q', angle: 180, radius: 1 },
      ],
    });
  });

  test('unknown chart: images, 3D surfaces and text-only figures', async () => {
    const [image, surface, text, untitled] = await charts([
      'import numpy as np',
      'plt.imshow([[0, 1], [1, 0]])',
      "plt.title('Image')",
      'plt.show()',
      'fig = plt.figure()',
      "ax = fig.add_subplot(projection='3d')",
      'X, Y = np.meshgrid(np.arange(3), np.arange(3))',
      'ax.plot_surface(X, Y, X * Y)',
      "ax.set_title('Surface')",
      'plt.show()',
      'fig = plt.figure()',
      "fig.suptitle('Only text')",
      "fig.text(0.5, 0.5, 'hello')",
      'plt.show()',
      "plt.figure().text(0.5, 0.5, 'no title')",
      'plt.show()',
    ]);
    // An unknown chart has its PNG and title only: no labels, ticks, scales or elements.
    assert.deepEqual(
      [image, surface, text, untitled].map(withoutPng),
      [
        { type: ChartType.UNKNOWN, title: 'Image', elements: [] },
        { type: ChartType.UNKNOWN, title: 'Surface', elements: [] },
        { type: ChartType.UNKNOWN, title: 'Only text', elements: [] },
        { type: ChartType.UNKNOWN, elements: [] },
      ],
    );
    assert.equal(untitled.title, undefined);
  });

  test('a chart without a title or axis labels has them undefined, not null', async () => {
    const chart = await oneChart(["plt.plot([1, 2], [3, 4], label='l')", 'plt.show()']);
    assert.equal(chart.type, ChartType.LINE);
    assert.equal(chart.title, undefined);
    assert.equal(chart.x_label, undefined);
    assert.equal(chart.y_label, undefined);
    assert.ok(!('title' in chart) && !('x_label' in chart) && !('y_label' in chart), Object.keys(chart).join());
    assert.deepEqual(chart.elements, [{ label: 'l', points: [[1, 3], [2, 4]] }]);
  });
});
